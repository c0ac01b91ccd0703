"""orch's long-lived dbt worker (orchestrator/dbt/src/worker.rs starts it).

A `dbt build` from the command line spends most of its time before any SQL runs: starting
Python, importing dbt and its adapter, and parsing the project (about 10 s on two busy cores
for the platform's project). This process pays that once: it parses the project when it starts
and then runs each build it is asked for with dbt's programmatic API (dbtRunner) over the
parsed manifest, in about a second.

Protocol, one JSON object per line:
- argv[1] is the JSON list of dbt's common arguments (project, profiles, target and log paths,
  target). Once it has parsed the project, the worker prints `{"orch_ready": true}` (or
  `{"orch_ready": false, "error": "..."}` and exits).
- Each request on stdin is `{"args": [...], "env": {"NAME": "value" or null}}`: the variables
  are set (null: removed) for that invocation, then dbt runs `args`. dbt's own log lines go to
  stdout as dbt prints them (`--log-format json` in `args` makes them JSON); then the worker
  prints `{"orch_done": true, "success": bool, "error": "..."}`.
- End of stdin ends the worker; so does the death of its parent (PR_SET_PDEATHSIG on Linux).

After each invocation the worker closes dbt-duckdb's database handle, which dbt keeps open for
the life of the process: DuckDB admits one writing process per file, and orch's loads and
dashboards must be able to open the warehouse between builds.
"""

import json
import os
import signal
import sys


def die_with_parent():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # not Linux: end of stdin still ends the worker
        pass


def close_duckdb():
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except Exception:  # another adapter
        return
    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            try:
                DuckDBConnectionManager._ENV.close()
            finally:
                DuckDBConnectionManager._ENV = None


def say(message):
    sys.stdout.flush()
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    die_with_parent()
    common = json.loads(sys.argv[1])
    try:
        from dbt.cli.main import dbtRunner

        parsed = dbtRunner().invoke(["parse"] + common + ["--no-write-json", "--quiet"])
        close_duckdb()
        if not parsed.success or parsed.result is None:
            say({"orch_ready": False, "error": str(parsed.exception or "dbt parse failed")})
            return 1
        runner = dbtRunner(manifest=parsed.result)
    except Exception as e:
        say({"orch_ready": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    say({"orch_ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        done = {"orch_done": True, "success": False}
        try:
            request = json.loads(line)
            for name, value in (request.get("env") or {}).items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            result = runner.invoke(request["args"])
            done["success"] = bool(result.success)
            if result.exception is not None:
                done["error"] = f"{type(result.exception).__name__}: {result.exception}"
        except BaseException as e:  # noqa: BLE001 - reported, and the worker goes on
            done["error"] = f"{type(e).__name__}: {e}"
        finally:
            try:
                close_duckdb()
            except Exception as e:
                done["success"] = False
                done["error"] = f"closing DuckDB: {e}"
        say(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
