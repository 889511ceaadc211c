"""What runs inside the Triton stubs: detection, tracking and the Triton boundary; never imports the launcher, tools or client."""
