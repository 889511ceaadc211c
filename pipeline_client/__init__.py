"""The client: sends camera frames to the served pipeline over gRPC and writes tracks, video and summaries."""
