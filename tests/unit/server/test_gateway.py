"""The gateway's config rendering (strict template, checked by the real haproxy) and its key loading."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline_config.render import RenderError
from pipeline_server.gateway import (
    Gateway,
    GatewaySettings,
    grpc_model_prefix,
    render_config,
    render_strict,
    write_runtime_files,
)
from pipeline_server.keys import (
    ApiKeys,
    KeysError,
    generate_keys_file,
    key_digest,
    keys_from_env,
    load_keys_file,
    parse_keys,
    resolve_keys,
)
from pipeline_server.server import Ports, redacted

KEYS = ApiKeys(inference="i" * 20, admin="a" * 20)
BACKENDS = [Ports(9000, 9001, 9002)]


def test_config_names_every_bind_backend_and_limit(tmp_path):
    settings = GatewaySettings(Ports(8100, 8101, 8102), listen=("0.0.0.0", "::1"), max_body_bytes=4096)
    text = render_config(settings, BACKENDS + [Ports(9100, 9101, 9102)], tmp_path)
    assert "bind 0.0.0.0:8101 proto h2" in text and "bind ::1:8100\n" in text
    assert "bind 127.0.0.1:8102" in text and "0.0.0.0:8102" not in text  # metrics stay on loopback
    assert "server triton1 127.0.0.1:9101 proto h2" in text and "server triton0 127.0.0.1:9000 check" in text
    assert "gt 4096" in text and '"${PIPELINE_TRITON_KEY}"' in text
    assert (
        "{ req.ver 2.0 } !{ req.hdr(content-length) -m found }" in text
    )  # cleartext h2 bodies need a length
    assert KEYS.admin not in text and "$$" not in text


def test_tls_binds_use_the_pem_and_alpn(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    settings = GatewaySettings(tls_cert=cert, tls_key=key, tls_client_ca=cert)
    text = render_config(settings, BACKENDS, tmp_path, tls_pem=tmp_path / "tls.pem")
    assert f"ssl crt {tmp_path / 'tls.pem'} ca-file {cert} verify required alpn h2" in text


def test_haproxy_accepts_the_rendered_config(tmp_path):
    gateway = Gateway(GatewaySettings(), BACKENDS, KEYS, "internal-key")
    if not gateway.binary.is_file():
        pytest.skip("no haproxy: run make setup")
    write_runtime_files(tmp_path, KEYS, GatewaySettings())
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(GatewaySettings(), BACKENDS, tmp_path))
    check = subprocess.run(
        [str(gateway.binary), "-c", "-f", str(config)],
        check=False,
        env=gateway.environment(),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "-m int" in config.read_text()


def test_strict_rendering_refuses_missing_and_unused_values():
    with pytest.raises(RenderError, match="no value for b"):
        render_strict("${a} ${b}", {"a": 1}, "t")
    with pytest.raises(RenderError, match="no placeholder uses: c"):
        render_strict("${a}", {"a": 1, "c": 2}, "t")
    assert render_strict("${a} $${env}", {"a": 1}, "t") == "1 ${env}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"listen": ("localhost",)}, "not an IP address"),
        ({"listen": ()}, "at least one"),
        ({"metrics_listen": ("1.2.3",)}, "not an IP address"),
        ({"max_body_bytes": 10}, "max body"),
        ({"max_body_bytes": 2**31}, "max body"),
        ({"tls_cert": Path("c.pem")}, "certificate and its key"),
        ({"tls_client_ca": Path("ca.pem")}, "client CA"),
        ({"public_models": ("a b",)}, "public model name"),
        ({"public_models": ("x" * 65,)}, "public model name"),
        ({"timeout_server": 0}, "positive"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GatewaySettings(**kwargs)


def test_grpc_model_prefix_is_the_protobuf_field_one():
    assert grpc_model_prefix("detect") == "0A06" + b"detect".hex().upper()


def test_runtime_files_hold_digests_only(tmp_path):
    keys = ApiKeys("i" * 20, "a" * 20, metrics="m" * 20)
    write_runtime_files(tmp_path, keys, GatewaySettings())
    assert (tmp_path / "metrics.sha256").read_text().split() == [key_digest("a" * 20), key_digest("m" * 20)]
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
        assert "i" * 20 not in path.read_text()


def test_key_values_stay_out_of_repr_and_the_launcher_log():
    assert "i" * 20 not in repr(KEYS)
    line = redacted(
        ["tritonserver", "--grpc-restricted-protocol=inference,metadata:x-k=SECRET", "--http-port=1"]
    )
    assert "SECRET" not in line and "--http-port=1" in line


def test_keys_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# comment\ninference=" + "i" * 20 + "\n\nadmin=" + "a" * 20 + "\n")
    path.chmod(0o600)
    assert load_keys_file(path) == KEYS
    path.chmod(0o644)
    with pytest.raises(KeysError, match="group or others"):
        load_keys_file(path)
    path.chmod(0o640)
    with pytest.raises(KeysError, match="chmod 600"):
        load_keys_file(path)
    with pytest.raises(KeysError, match="does not exist"):
        load_keys_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inference=" + "i" * 20, "no admin"),
        ("admin=" + "a" * 20, "no inference"),
        ("inference=" + "i" * 20 + "\nadmin=" + "i" * 20, "must differ"),
        ("inference=short\nadmin=" + "a" * 20, "at least 16"),
        ("inference=" + "i" * 19 + ",\nadmin=" + "a" * 20, "at least 16"),
        ("inference " + "i" * 20, "expected role=key"),
        ("root=" + "r" * 20, "unknown role"),
        ("admin=" + "a" * 20 + "\nadmin=" + "b" * 20, "given twice"),
    ],
)
def test_bad_keys_are_refused(text, message):
    with pytest.raises(KeysError, match=message):
        parse_keys(text)


def test_keys_from_the_environment():
    assert keys_from_env({}) is None
    env = {"PIPELINE_INFERENCE_KEY": "i" * 20, "PIPELINE_ADMIN_KEY": "a" * 20}
    assert keys_from_env(env) == KEYS
    with pytest.raises(KeysError, match="PIPELINE_ADMIN_KEY not set"):
        keys_from_env({"PIPELINE_INFERENCE_KEY": "i" * 20})


def test_resolve_generates_a_private_file_once(tmp_path):
    default = tmp_path / "out" / "gateway-keys"
    keys, source = resolve_keys(None, {}, default)
    assert "generated" in source and keys.inference not in source
    assert default.stat().st_mode & 0o777 == 0o600
    again, source = resolve_keys(None, {}, default)
    assert again == keys and "generated" not in source
    with pytest.raises(FileExistsError):
        generate_keys_file(default)
    with pytest.raises(KeysError, match="no keys"):
        resolve_keys(None, {}, None)
    env = {"PIPELINE_INFERENCE_KEY": "i" * 20, "PIPELINE_ADMIN_KEY": "a" * 20}
    assert resolve_keys(None, env, default)[0] == KEYS  # the environment before the default file


def test_tritonserver_does_not_inherit_the_client_keys(tmp_path):
    from pipeline_server.server import server_environment

    base = {"PATH": "/bin", "PIPELINE_ADMIN_KEY": "a" * 20, "PIPELINE_INFERENCE_KEY": "i" * 20, "OTHER": "1"}
    env = server_environment(tmp_path, tmp_path, base)
    assert "PIPELINE_ADMIN_KEY" not in env and "PIPELINE_INFERENCE_KEY" not in env and env["OTHER"] == "1"


def test_haproxy_gets_a_clean_environment_with_the_internal_key_only(monkeypatch):
    monkeypatch.setenv("PIPELINE_ADMIN_KEY", "a" * 20)
    env = Gateway(GatewaySettings(), BACKENDS, KEYS, "internal-key").environment()
    assert env["PIPELINE_TRITON_KEY"] == "internal-key" and "PIPELINE_ADMIN_KEY" not in env
