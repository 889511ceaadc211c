"""A real MQTT broker for tests: Debian 12's Mosquitto 2.0.11 (``make mosquitto``) on a port, and a real paho
subscriber that records what arrives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from pipeline_config import paths

HOME = paths.project_root() / ".cache" / "mosquitto"
BINARY = HOME / "usr" / "sbin" / "mosquitto"
LIBDIR = HOME / "usr" / "lib" / "x86_64-linux-gnu"


class Broker:
    """``mosquitto`` on 127.0.0.1:``port`` (anonymous, no persistence); ``start``/``kill`` repeatable."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type all\n"
        )
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "mosquitto.log"

    def start(self, timeout_s: float = 10.0) -> None:
        log = self.log_path.open("ab")
        env = {**os.environ, "LD_LIBRARY_PATH": str(LIBDIR)}
        self.process = subprocess.Popen(
            [str(BINARY), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode}: {self.log_path.read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mosquitto not listening after {timeout_s} s") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the broker is gone at once, without closing its connections cleanly."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class Subscriber:
    """A paho client subscribed to ``topic`` (QoS 1) that records ``(topic, payload)``; reconnects itself."""

    def __init__(self, port: int, topic: str = "#") -> None:
        self.messages: list[tuple[str, dict]] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda _c, _u, _m, _r, _p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, 10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("no SUBACK")

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def received(self) -> list[tuple[str, dict]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
