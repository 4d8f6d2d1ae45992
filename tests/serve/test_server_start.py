"""Starting and stopping a real tritonserver on an empty repository: the reason a start failed,
and what is left on disk afterwards."""

import socket

import pytest

from csrinfer.errors import BackendUnavailableError, ServerError

try:
    from csrinfer.serve.server import TritonServer, find_tritonserver

    find_tritonserver()
except BackendUnavailableError as e:
    pytest.skip(f"tritonserver is not installed ({e})", allow_module_level=True)

STALE = "E1126 15:00:00.000000 1 server.cc:1] \"failed to load 'old' version 1: Found no NVIDIA driver\"\n"


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_port_asked_for_that_is_busy_is_refused_before_launching(tmp_path, busy_port):
    """Another server on the port would otherwise answer the readiness check for this one."""
    (tmp_path / "repo").mkdir()
    log = tmp_path / "tritonserver.log"
    server = TritonServer(tmp_path / "repo", grpc_port=busy_port, log_file=log)
    with pytest.raises(ServerError, match=f"^port {busy_port} \\(grpc\\) on 127.0.0.1 is already in use"):
        server.start(timeout=60)
    assert server.process is None and not log.exists()


@pytest.fixture
def taken_after_the_check(monkeypatch):
    """A port that another process binds between our check and Triton's own bind."""
    import csrinfer.serve.server

    monkeypatch.setattr(csrinfer.serve.server, "port_is_free", lambda port, host="127.0.0.1": True)


def test_a_busy_port_is_the_reason_not_an_earlier_runs_line(tmp_path, busy_port, taken_after_the_check):
    (tmp_path / "repo").mkdir()
    log = tmp_path / "tritonserver.log"
    log.write_text(STALE)
    server = TritonServer(tmp_path / "repo", http_port=busy_port, log_file=log)
    with pytest.raises(ServerError) as info:
        server.start(timeout=60)
    assert f"Socket '127.0.0.1:{busy_port}' already in use" in str(info.value)
    assert "NVIDIA" not in str(info.value)
    text = log.read_text()
    assert text.startswith(STALE)  # a log the caller named keeps what it held
    assert text.count("already in use") == 1  # a port the caller chose is not tried again


def test_stop_leaves_no_work_folder(tmp_path):
    (tmp_path / "repo").mkdir()
    server = TritonServer(tmp_path / "repo", log_file=tmp_path / "tritonserver.log")
    with server:
        assert server._workdir.is_dir()
    assert not server._workdir.exists()
    assert (tmp_path / "tritonserver.log").exists()


def test_a_failed_start_keeps_only_the_log_it_names(tmp_path, busy_port, taken_after_the_check):
    (tmp_path / "repo").mkdir()
    server = TritonServer(tmp_path / "repo", http_port=busy_port)
    with pytest.raises(ServerError, match="already in use") as info:
        server.start(timeout=60)
    try:
        assert f"(log: {server.log_file})" in str(info.value)
        assert [p.name for p in server._workdir.iterdir()] == ["tritonserver.log"]
    finally:
        server.log_file.unlink()
        server._workdir.rmdir()
