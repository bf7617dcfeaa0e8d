"""Pod configuration: validation, the secret kept out of sight, and entrypoint precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from kurastore.storage import PodConfig
from kurastore.storage.__main__ import load_config, main

SECRET = b"config-test-secret-0123456789"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    return path


def test_secret_never_in_repr(tmp_path: Path) -> None:
    config = PodConfig(data_dir=tmp_path, secret=SECRET)
    assert SECRET.decode() not in repr(config)


@pytest.mark.parametrize(
    "bad",
    [
        {"secret": b"short"},
        {"port": 70000},
        {"capacity_bytes": -1},
        {"io_threads": 0},
        {"write_batch_bytes": 10},
        {"max_clock_skew_s": 0},
    ],
)
def test_nonsense_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    values: dict[str, object] = {"data_dir": tmp_path, "secret": SECRET, **bad}
    with pytest.raises(ValueError):
        PodConfig(**values)  # type: ignore[arg-type]


def test_command_line(tmp_path: Path, secret_file: Path) -> None:
    config = load_config(
        ["--data", str(tmp_path / "d"), "--listen", "0.0.0.0:9200", "--secret-file",
         str(secret_file), "--pod-id", "pod-7", "--capacity-bytes", "1000"],
        environ={},
    )
    assert (config.data_dir, config.host, config.port) == (tmp_path / "d", "0.0.0.0", 9200)
    assert (config.secret, config.pod_id, config.capacity_bytes) == (SECRET, "pod-7", 1000)


def test_precedence_toml_env_cli(tmp_path: Path, secret_file: Path) -> None:
    toml = tmp_path / "pod.toml"
    toml.write_text(
        f'[pod]\ndata_dir = "{tmp_path / "from-toml"}"\nsecret_file = "{secret_file}"\n'
        'port = 9300\npod_id = "toml"\nio_threads = 4\n'
    )
    env = {"KURASTORE_POD_ID": "env", "KURASTORE_POD_LISTEN": "127.0.0.1:9400"}
    config = load_config(["--config", str(toml)], environ=env)
    assert (config.data_dir, config.port, config.pod_id) == (tmp_path / "from-toml", 9400, "env")
    assert config.io_threads == 4
    config = load_config(["--config", str(toml), "--pod-id", "cli"], environ=env)
    assert config.pod_id == "cli"


def test_main_refuses_incomplete_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(tmp_path)]) == 2
    assert "secret" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_bytes(b"tiny")
    assert main(["--data", str(tmp_path), "--secret-file", str(short)]) == 2
    assert "tiny" not in capsys.readouterr().err
