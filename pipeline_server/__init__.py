"""Runs tritonserver and the HAProxy gateway in front of it: keys, ports, the watchdog, shared memory, stopping."""
