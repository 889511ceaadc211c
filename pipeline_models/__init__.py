"""Person detection and ByteTrack tracking for Triton; importable without Triton."""
