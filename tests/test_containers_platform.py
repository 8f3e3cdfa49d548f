"""The platform's default job in the self-test (limits, verdicts, usage) and the invoke port, without an engine:
a fake Docker client records what the self-test asks the engine for."""

from __future__ import annotations

import json
import shutil

import pytest

from toolkit.containers import entrypoint
from toolkit.containers.platform import (
    PLATFORM_DEFAULT,
    JobLimits,
    memory_problem,
    parse_memory_mb,
    usage_line,
    verdict,
)
from toolkit.containers.selftest import peak_memory_mb, run_container
from toolkit.errors import SegkitError


def test_the_default_job_is_the_platforms():
    assert JobLimits(memory_mb=7168, cpus=2.0, time_limit_s=1200, gpus=0) == PLATFORM_DEFAULT


@pytest.mark.parametrize(("text", "mb"), [("7168m", 7168), ("7g", 7168), ("7168", 7168), ("15g", 15360),
                                          ("7168MB", 7168)])
def test_memory_sizes(text, mb):
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize("text", ["lots", "7t", "", "12"])
def test_memory_sizes_that_are_not(text):
    with pytest.raises(SegkitError, match="memory limit"):
        parse_memory_mb(text)


def _run(**kw):
    return {"exit_code": 0, "seconds": 100.0, "timed_out": False, "oom_killed": False, "logs": "", **kw}


def test_verdict_names_what_does_not_fit():
    limits = JobLimits(memory_mb=7168, cpus=2, time_limit_s=1200)
    assert verdict("c1", _run(), limits) is None
    assert "killed at the job's memory limit of 7168 MB" in verdict("c1", _run(exit_code=137, oom_killed=True), limits)
    assert "still running at the phase's time limit of 1200 s" in verdict("c1", _run(exit_code=-1, timed_out=True),
                                                                          limits)
    late = verdict("c1", _run(seconds=1300.0), limits)
    assert late.startswith("c1 does not fit: took 1300 s, over the phase's time limit of 1200 s with 2 CPU(s)")
    logs = "loading\nRuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB\n"
    assert verdict("c1", _run(exit_code=1, logs=logs), limits) == (
        "c1 does not fit in 7168 MB: RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to "
        "allocate 9 GB")
    other = verdict("c1", _run(exit_code=2, logs="segkit: error: /input/x.mha: corrupt"), limits)
    assert other == "c1: container exit 2: segkit: error: /input/x.mha: corrupt" and memory_problem("ok") is None


def test_usage_line_puts_time_and_memory_against_the_limits():
    line = usage_line("c1", 300.0, 1792.0, JobLimits())
    assert line == "c1: 300.0 s of 1200 s (25%), peak 1792 MB of 7168 MB (25%)"
    assert "peak memory not reported" in usage_line("c1", 3.0, None, JobLimits())


class _FakeContainer:
    def __init__(self, state: dict, logs: str, hang: bool):
        self.attrs = {"State": state}
        self._logs, self.hang, self.killed, self.removed = logs, hang, False, False

    def wait(self, timeout):
        if self.hang and not self.killed:
            import requests

            raise requests.exceptions.ReadTimeout("read timed out")  # what docker's client raises
        return {"StatusCode": self.attrs["State"]["ExitCode"]}

    def kill(self):
        self.killed = True

    def reload(self):
        pass

    def logs(self, stdout, stderr):
        return self._logs.encode()

    def remove(self, force):
        self.removed = True


class _FakeClient:
    """Records the run's arguments; the container 'runs' 125.5 s as the engine's timestamps say."""

    def __init__(self, exit_code=0, oom=False, hang=False, logs='{"outputs": [], "peak_rss_mb": 1234.5}\n'):
        state = {"ExitCode": exit_code, "OOMKilled": oom, "StartedAt": "2025-01-01T10:00:00.250000000Z",
                 "FinishedAt": "2025-01-01T10:02:05.750000001Z"}
        self.container = _FakeContainer(state, logs, hang)
        self.containers = self

    def run(self, tag, args, **kwargs):
        self.kwargs = kwargs
        return self.container


def test_self_test_runs_each_case_in_the_platforms_default_job(tmp_path):
    client = _FakeClient()
    run = run_container(client, "x:1", tmp_path / "job", tmp_path / "out")
    kw = client.kwargs
    assert kw["mem_limit"] == "7168m" and kw["memswap_limit"] == "7168m" and kw["nano_cpus"] == 2_000_000_000
    assert [(u["Name"], u["Soft"], u["Hard"]) for u in kw["ulimits"]] == [("data", 7168 << 20, 7168 << 20)]
    assert kw["device_requests"] is None and kw["network_mode"] == "none"  # no GPU unless asked
    assert kw["volumes"][str((tmp_path / "job").resolve())] == {"bind": "/input", "mode": "ro"}
    assert run["seconds"] == pytest.approx(125.5) and run["peak_mb"] == 1234.5 and not run["timed_out"]
    assert client.container.removed


def test_self_test_attaches_gpus_and_other_limits_only_when_asked(tmp_path):
    client = _FakeClient()
    run_container(client, "x:1", tmp_path / "job", tmp_path / "out", JobLimits(15360, 4, 600, gpus=1))
    kw = client.kwargs
    assert kw["mem_limit"] == "15360m" and kw["nano_cpus"] == 4_000_000_000
    assert [(r["Count"], r["Capabilities"]) for r in kw["device_requests"]] == [(1, [["gpu"]])]


def test_a_case_past_the_time_limit_is_stopped_and_does_not_fit(tmp_path):
    client = _FakeClient(hang=True)
    run = run_container(client, "x:1", tmp_path / "job", tmp_path / "out", JobLimits(time_limit_s=5))
    assert run["timed_out"] and client.container.killed and client.container.removed
    assert "still running at the phase's time limit of 5 s" in verdict("c1", run, JobLimits(time_limit_s=5))


def test_an_oom_killed_case_does_not_fit(tmp_path):
    run = run_container(_FakeClient(exit_code=137, oom=True, logs=""), "x:1", tmp_path / "j", tmp_path / "o")
    assert run["oom_killed"] and run["peak_mb"] is None
    assert "killed at the job's memory limit of 7168 MB" in verdict("c1", run, PLATFORM_DEFAULT)


def test_peak_memory_is_read_from_the_entry_points_summary():
    assert peak_memory_mb('segkit: case done\n{"outputs": [], "peak_rss_mb": 812.0}\n') == 812.0
    assert peak_memory_mb("segkit: error: x") is None


# -- the entry point --------------------------------------------------------------------------------
def test_invoke_port_comes_from_the_platforms_variable(monkeypatch, tmp_path):
    var = "GRAND_CHALLENGE_COMPONENT_USER_WEBSERVER_PORT"
    assert entrypoint.port_from_environment({}) == 4743
    assert entrypoint.port_from_environment({var: "4801"}) == 4801
    with pytest.raises(SegkitError, match="is not a TCP port"):
        entrypoint.port_from_environment({var: "http"})
    seen = {}
    monkeypatch.setattr(entrypoint, "serve", lambda settings, args: seen.update(port=args.port))
    monkeypatch.setenv(var, "4802")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"mode": "invoke"}))
    assert entrypoint.main(["--settings", str(settings)]) == 0 and seen["port"] == 4802
    assert entrypoint.main(["--settings", str(settings), "--port", "5000"]) == 0 and seen["port"] == 5000


def test_run_once_summary_reports_peak_memory(phantom_dataset, tiny_phantom_bundle, tmp_path, capsys):
    from challenges.registry import get_adapter
    from toolkit.bundle.manifest import sha256_of
    from toolkit.containers.interface import resolve_interface
    from toolkit.containers.selftest import layout_jobs

    itf = resolve_interface("kits19", get_adapter("kits19").container,
                            json.loads((phantom_dataset / "dataset.json").read_text()))
    shutil.copy(phantom_dataset / "imagesTs" / "phantom_008_0000.nii.gz", tmp_path)
    job = layout_jobs(tmp_path, itf, tmp_path / "jobs")[0][1]
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"interface": itf.to_json(), "tta": False, "mode": "run",
                                    "bundle_manifest_sha256": sha256_of(tiny_phantom_bundle / "manifest.json")}))
    code = entrypoint.main(["--settings", str(settings), "--bundle", str(tiny_phantom_bundle), "--input", str(job),
                            "--output", str(tmp_path / "out"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert peak_memory_mb(out) > 50  # torch alone is more than that: a real peak, in MB
