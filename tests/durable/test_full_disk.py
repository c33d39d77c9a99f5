"""A store that cannot write any more (the file size limit stands in for a full disk):
callers get a clear UNAVAILABLE, the server keeps answering, and nothing it acknowledged
is lost."""

import resource
from pathlib import Path

from workflow_client import UnavailableError, WorkflowClient

from .test_crash import free_port, launch

LIMIT = 4 << 20  # bytes any file the server writes may grow to


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


async def test_a_full_store_refuses_clearly_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    port = free_port()
    address = f"127.0.0.1:{port}"
    store = f"sqlite:///{db}"
    proc, drain = await launch(port, store, preexec_fn=_limit_file_size)
    acknowledged: dict[str, str] = {}
    try:
        async with WorkflowClient(address, reconnect_attempts=0) as client:
            refusal: UnavailableError | None = None
            for i in range(1000):  # 20 KB a message: the 4 MiB limit is reached long before
                message = f"{i:04d}" + "x" * 20_000
                try:
                    assert await client.run("echo", run_id=f"r{i}", message=message) == message
                except UnavailableError as e:
                    refusal = e
                    break
                acknowledged[f"r{i}"] = message
            assert refusal is not None, "the store never filled up"
            assert len(acknowledged) >= 10, "the store failed before taking much"
            assert "run store" in str(refusal) and "failed" in str(refusal)
            # The server stays up and keeps saying why it takes no more runs.
            assert proc.returncode is None
            again = None
            try:
                await client.run("echo", message="more")
            except UnavailableError as e:
                again = e
            assert again is not None and "run store" in str(again)
            assert [w.name for w in await client.list_workflows()]
    finally:
        proc.kill()
        await proc.wait()
        await drain  # its log, read to the end

    # Restarted with room to write: every run that was acknowledged is there, with its result.
    proc, drain = await launch(port, store)
    try:
        async with WorkflowClient(address) as client:
            for run_id, message in acknowledged.items():
                run = await client.get_run(run_id)
                assert run.status == "SUCCEEDED", run_id
                assert run.result == message
    finally:
        proc.kill()
        await proc.wait()
        await drain  # its log, read to the end
