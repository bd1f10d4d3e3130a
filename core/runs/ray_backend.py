"""
Runs on a Ray cluster: each run an actor that runs the page's own worker loop (core.runs.worker) on a
cluster node, its records relayed back into the runs file on the machine that holds it. Two users: an
experiment's coordinator (many trials, core.experiments) and, with ZTH_RAY_ADDRESS, a dashboard server's own
runs (one relay process per run, serve below), so a classroom trains on the cluster while the server only
draws. A cluster with every CPU busy is a queue: a run waits for one, its row saying so, and can be stopped.

    relay (this machine, the runs file)                   Ray actor (a cluster node)
      create the run row; the run's worker is this      worker._serve(Relay, run_id): the same loop, recorder,
      process (its pid): a dead relay ends it             checkpoints; its writes queue up in the Relay
      every POLL: exchange(command from the run's  --->  the command (pause, stop, step:N, sample...) goes in,
      slot)  <--- steps, evals, captures, meta,           everything written since the last exchange comes out
      checkpoints  -> RunDB.append / update_run

so the Runs page, the live pages and the CLI read one store, and Pause/Stop reach the remote run through
the command slot they already write. Faults: an actor whose process died (a node lost, a kill) fails its run
with the reason; no answer from the cluster's head for LOST_SECONDS fails every live run (an experiment then
stops asking for more, keeping every finished trial). Actors are created with max_restarts=0 and calls with
max_task_retries=0: a killed worker fails its run rather than training it again from step 0 behind our back.

The cluster nodes need this project's requirements installed; its code (core/, data/) travels with the job
(runtime_env py_modules).
"""

import importlib.util
import math
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

try:  # optional (requirements-ray.txt): this module is imported only when --ray or ZTH_RAY_ADDRESS asks for it
    import ray
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
except ImportError:  # pragma: no cover - the message is the point
    ray = None

from core.runs import liveness, process
from core.runs.db import FREE_COMMANDS, LIVE_STATES, RunDB

START_SECONDS = 120.0   # with a CPU free on the cluster, an actor must start within this (a node loads torch)
CALL_SECONDS = 10.0     # one round of exchanges may take this long before the head is checked
LOST_SECONDS = 10.0     # the head refusing connections this long: the cluster is lost (a blip is shorter)
CHECKPOINT_SECONDS = 10.0  # a remote trial's model travels back this often at most (pages look inside it)
IDENTITY = ("pid", "host", "pid_start")  # the remote worker's own: the run row keeps the relay's
POLL_SECONDS = 0.25     # a relay exchanges with its run this often (a page refreshes once a second)
CPUS_SECONDS = 2.0      # runs waiting for a CPU ask the cluster how many are free this often


class ClusterError(ValueError):
    """No cluster to run on (Ray not installed, nobody answering, a malformed address): one line, and nothing
    runs on this machine in its place."""


def parse_address(address):
    """(host, port) of HOST:PORT or ray://HOST:PORT; ClusterError for anything else."""
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"a Ray address is HOST:PORT (as `ray start --head` prints it) or ray://HOST:PORT "
                              f"(got {address!r})")
    return host, int(port)


def check(address):
    """(host, port) of a cluster that answers; ClusterError, in one line, when Ray is not installed here, the
    address is malformed or nobody answers there. Nothing ever trains on this machine in its place."""
    if ray is None:
        raise ClusterError(f"Ray is not installed here, and runs should train on the Ray cluster at {address}: "
                           "pip install -r requirements-ray.txt (runs and trials never fall back to this machine)")
    host, port = parse_address(address)
    if not reachable(host, port):
        raise ClusterError(f"no Ray cluster answers at {address}: start one (ray start --head) or unset --ray / "
                           "ZTH_RAY_ADDRESS; runs and trials never fall back to this machine")
    return host, port


def reachable(host, port, timeout=3.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# -----------------------------------------------------------------------------
# the remote side: a Relay stands in for the runs file inside the actor


class Relay:
    """What core.runs.worker._serve and RunStore call on a RunDB, kept in memory until the coordinator
    collects it (drain). Commands arrive the other way (give)."""

    busy_until = 0.0
    busy_waited = 0.0

    def __init__(self, row, folder):
        self.row = row
        self.path = Path(folder) / "runs.sqlite"  # only named in messages; checkpoints go through it
        self._lock = threading.Lock()
        self._out = []
        self._command = None
        self._checkpoint, self._sent = None, 0.0  # the latest checkpoint not yet sent, and when one last went
        self.done = False

    # --- RunDB's surface, as the worker uses it ---------------------------------------

    def get_run(self, run_id):
        return self.row

    def update_run(self, run_id, **fields):
        self._put(("update", fields))

    def append(self, run_id, steps=(), evals=(), captures=(), **run_fields):
        self._put(("append", dict(steps=list(steps), evals=list(evals), captures=list(captures), **run_fields)))

    def take_command(self, run_id):
        with self._lock:
            cmd, self._command = self._command, None
        return cmd, time.time()  # no page's heartbeat out here: the coordinator's exchanges are the heartbeat

    def checkpoint_path(self, run_id):
        return self.path.parent / f"{run_id}.pt"

    def save_checkpoint(self, run_id, model, step):
        # RunDB's own writer (hooks and .out set aside, atomic file), into this node's temp folder; the latest one
        # travels back at most every CHECKPOINT_SECONDS, and always the last (a deep net's file is MBs: the local
        # worker's one every 2 s, times a cluster's runs, would keep the head's link busy)
        RunDB.save_checkpoint(self, run_id, model, step)
        with self._lock:
            self._checkpoint = (step, self.checkpoint_path(run_id))

    def lift_cap(self):
        pass

    def count_runs(self):
        return 1

    def close(self):
        pass

    # --- the coordinator's side -----------------------------------------------------------

    def _put(self, item):
        with self._lock:
            self._out.append(item)

    def give(self, command):
        if command:
            with self._lock:
                self._command = command

    def drain(self, last=False):
        with self._lock:
            out, self._out = self._out, []
            if self._checkpoint and (last or time.time() - self._sent > CHECKPOINT_SECONDS):
                step, path = self._checkpoint
                out.append(("checkpoint", dict(step=step, blob=path.read_bytes())))
                self._checkpoint, self._sent = None, time.time()
        return out


class TrialActor:
    """One run on a cluster node: the worker loop in a thread, exchange() called by the relay."""

    def start(self, run_id, row, words, paused=False):
        """Begin training (or wait, paused); returns where it runs. words: the data file's text, when the run
        trains on one (the relay's path means nothing on this node)."""
        self.folder = tempfile.mkdtemp(prefix=f"zth-{run_id}-")
        spec = dict(row["spec"])
        if words is not None:
            path = os.path.join(self.folder, os.path.basename(spec["data"]["path"]))
            with open(path, "w", encoding="utf-8") as f:
                f.write(words)
            spec["data"] = {**spec["data"], "path": path}
        self.relay = Relay(dict(row, spec=spec), self.folder)
        self.error = None
        threading.Thread(target=self._train, args=(run_id, paused), daemon=True).start()
        return dict(node=ray.util.get_node_ip_address(), hostname=socket.gethostname(), pid=os.getpid())

    def _train(self, run_id, paused):
        from core.runs import worker  # on the node: torch loads there, never in the relay
        from core.training.loop import configure_torch
        configure_torch(1)
        try:
            # the page's worker loop itself; no signals out here (a Ray worker's main thread owns them) and no
            # orphan clock (the relay keeps it: its exchanges stop when it goes, and Ray ends its actors then)
            worker._serve(self.relay, run_id, math.inf, paused, [], liveness.identity())
        except BaseException as e:
            self.error = f"the trial failed on its Ray worker: {e!r}"
        finally:
            self.relay.done = True

    def exchange(self, command=None):
        """The command for the run (or None) in; (records since the last call, done, error) out."""
        self.relay.give(command)
        done = self.relay.done  # read before draining: a run that is done has queued its last records
        return self.relay.drain(last=done), done, self.error


# -----------------------------------------------------------------------------
# the coordinator's side


@dataclass
class Pending:
    actor: object
    ref: object                       # its start() call: ready once the cluster placed it and it began
    free_since: float | None = None   # since when the cluster has had a free CPU while this one waited
    said: bool = False                # the run's message says it waits for a CPU
    held: str | None = None           # a command its page sent while it waited (Pause, Step): sent once it starts


class RayCluster:
    """Runs on a cluster, relayed into this machine's runs file: start / pump / stop / close, the backend
    core.experiments.coordinator drives like LocalPool; launch / pump for a run that exists (serve)."""

    kind = "ray"

    def __init__(self, address, workers=None, db=None):
        self.address = address
        self.host, self.port = check(address)
        # a driver whose head stops answering is ended by Ray after this many seconds; the coordinator judges
        # the cluster lost after LOST_SECONDS and must have the time to say so and record its trials' ends
        os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "300")
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, namespace="zero-to-hero-lab",
                 runtime_env={"py_modules": [_package("core"), _package("data")],
                              "excludes": ["__pycache__", "*.pyc", "*.nbi", "*.nbc"],
                              "env_vars": {"OMP_NUM_THREADS": "1"}})
        self.remote = ray.remote(TrialActor).options(num_cpus=1, max_restarts=0, max_task_retries=0)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
        self.size = workers or cpus
        self.note = f"Ray cluster at {address}: {cpus} CPUs on {nodes} node{'s' * (nodes != 1)}, {self.size} at once"
        self.db, self._own_db = (db, False) if db is not None else (RunDB(), True)
        self.trials = {}   # run id -> (actor, node)
        self.pending = {}  # run id -> Pending: asked for, not placed yet (a full cluster queues them)
        self._cpus_at, self._cpu_counts = 0.0, (None, None)
        self._ended_here = set()  # runs whose end their own worker wrote (its last records still to come)
        self.heard = {}    # run id -> a page's latest heartbeat (take_command's), for a relay's orphan clock
        self.lost = None
        self._silent_since = None  # when the head last stopped answering
        self._unanswered = {}      # run id -> since when its actor has been unavailable (a blip, or a node going)

    def start(self, spec, name):
        """(run id, None): the node is known once the cluster places its actor (pump writes it on the run)."""
        run_id = self.db.create_run(spec, name)
        self.launch(run_id)
        return run_id, None

    def launch(self, run_id, paused=False):
        """Ask the cluster for an actor for a run the runs file holds, and return at once: pump() follows it. A
        full cluster is a queue: the run waits, "starting", its message saying so, and a Stop ends it there."""
        # this process serves the run's command slot: to the runs file it is the run's worker (a dead
        # relay is noticed by any reader, and the run ends with that cause)
        self.db.update_run(run_id, meta=dict(backend="ray", ray=self.address), **liveness.identity())
        row = self.db.get_run(run_id)
        src = row["spec"].get("data") or {}
        words = Path(src["path"]).read_text(encoding="utf-8") if src.get("kind") == "file" else None
        if self.lost or not reachable(self.host, self.port):
            self._judge_head(False)
            self.db.end_if_live(run_id, self.lost or f"the Ray cluster at {self.address} was lost before its "
                                                     "actor started (its head refuses connections)")
            return
        actor = self.remote.remote()
        self.pending[run_id] = Pending(actor, actor.start.remote(run_id, row, words, paused))

    def pump(self, override=None):
        """One exchange with every live run: commands out, records in; faults end the runs they hit. Runs
        waiting for their actor are placed, stopped or told where they stand in the queue.
        override: run id -> a command sent in place of the slot's (a relay's own stop)."""
        if not self.trials and not self.pending:
            return
        if not reachable(self.host, self.port):
            self._judge_head(False)  # no calls into a cluster whose head is gone: they would only hang
            return
        commands = {}
        for run_id in [*self.pending, *self.trials]:
            cmd, self.heard[run_id] = self.db.take_command(run_id)
            commands[run_id] = (override or {}).get(run_id) or cmd
        self._place(commands)
        calls = {}
        for run_id, (actor, node) in list(self.trials.items()):
            if commands.get(run_id) == "ended":
                if run_id not in self._ended_here:  # someone judged this run gone and ended it: their word stands
                    self._drop(run_id)
                    continue
                commands[run_id] = None  # its own end, written before its samples and last model: collect them
            calls[run_id] = actor.exchange.remote(commands.get(run_id))
        if not calls:
            self._judge_head(True)
            return
        ready, _ = ray.wait(list(calls.values()), num_returns=len(calls), timeout=CALL_SECONDS)
        ready = set(ready)
        answered = False
        for run_id, ref in calls.items():
            actor, node = self.trials[run_id]
            try:
                if ref not in ready:
                    raise GetTimeoutError(f"no answer within {CALL_SECONDS:g} s")
                records, done, error = ray.get(ref, timeout=CALL_SECONDS)
            except (RayActorError, GetTimeoutError, ConnectionError, OSError) as e:
                if not reachable(self.host, self.port):
                    break  # the head is gone, not this worker: judged below, for every trial at once
                if isinstance(e, RayActorError) and not isinstance(e, ActorUnavailableError):
                    self._end(run_id, f"its Ray worker on {node} died mid-trial ({_cause(e)}); what it recorded "
                                      "is kept")
                elif time.time() - self._unanswered.setdefault(run_id, time.time()) > LOST_SECONDS:
                    self._end(run_id, f"its Ray worker on {node} did not answer for {LOST_SECONDS:g} s ({e!r})")
                continue
            self._unanswered.pop(run_id, None)
            answered = True
            self._write(run_id, records)
            if done:
                if error:
                    self.db.end_if_live(run_id, error)
                self._drop(run_id)
        self._judge_head(answered)

    def _place(self, commands):
        """The runs waiting for their actor: a started one joins the trials, its first exchange carrying this
        round's command or what its page asked while it waited (Pause, Step); a stop (or an end someone else
        wrote) ends a waiting one here; the rest wait, as long as the cluster is full, and say so on the run."""
        if not self.pending:
            return
        free, total = self._cpus()
        for run_id, p in list(self.pending.items()):
            cmd = commands.get(run_id) or ""
            if ray.wait([p.ref], timeout=0)[0]:
                del self.pending[run_id]
                try:
                    where = ray.get(p.ref, timeout=CALL_SECONDS)
                except ray.exceptions.RayError as e:  # the actor died starting; its runtime env failed to build...
                    _kill(p.actor)
                    self.db.end_if_live(run_id, f"its Ray actor failed to start: {_cause(e)}")
                    continue
                node = where["node"]
                meta = dict(node=node, node_host=where["hostname"], node_pid=where["pid"])
                self.db.update_run(run_id, meta=dict(meta, message=None) if p.said else meta)  # no longer waiting
                self.trials[run_id] = (p.actor, node)
                commands[run_id] = cmd or p.held
                continue
            if cmd == "ended" or cmd == "stop" or cmd.startswith("stop:"):
                del self.pending[run_id]
                _kill(p.actor)
                if cmd != "ended":
                    why = cmd[len("stop:"):] or "stopped by the user"
                    self.db.end_if_live(run_id, f"{why}, before the Ray cluster placed it", state="stopped")
                continue
            if cmd and not (p.held and cmd.startswith(FREE_COMMANDS)):  # as the slot: a sample never replaces a pause
                p.held = cmd
            if free is None:  # the head did not say (going, or a blip): the next round judges
                continue
            # a full cluster is a queue, however long; a cluster with a free CPU that still does not start the
            # actor for START_SECONDS (a node that cannot load torch, say) fails the run
            p.free_since = (p.free_since or time.time()) if free >= 1 else None
            if p.free_since and time.time() - p.free_since > START_SECONDS:
                del self.pending[run_id]
                _kill(p.actor)
                self.db.end_if_live(run_id, f"its Ray actor did not start within {START_SECONDS:.0f} s, "
                                            "though the cluster had a free CPU")
            elif free < 1 and not p.said:
                p.said = True
                self.db.update_run(run_id, meta=dict(message=f"waiting for a free CPU on the Ray cluster "
                                                             f"(all {total:.0f} are training)"))

    def _cpus(self):
        """(free, total) CPUs of the cluster, asked at most every CPUS_SECONDS and bounded (a head that dies
        between our look and the call would keep it for minutes); (None, None) when the head did not say."""
        if time.time() - self._cpus_at > CPUS_SECONDS:
            self._cpus_at = time.time()
            self._cpu_counts = _bounded(lambda: (ray.available_resources().get("CPU", 0.0),
                                                 ray.cluster_resources().get("CPU", 0.0)), CALL_SECONDS) or (None, None)
        return self._cpu_counts

    def _judge_head(self, answered):
        if answered or reachable(self.host, self.port):
            self._silent_since = None
            return
        self._silent_since = self._silent_since or time.time()
        if time.time() - self._silent_since < LOST_SECONDS:
            return
        self.lost = (f"the Ray cluster at {self.address} was lost (no answer from its head for "
                     f"{LOST_SECONDS:g} s): the trials still training there failed; finished trials are kept")
        for run_id in [*self.trials, *self.pending]:
            self.db.end_if_live(run_id, self.lost)
        self.trials.clear()
        self.pending.clear()

    def _end(self, run_id, message):
        self.db.end_if_live(run_id, message)
        self._drop(run_id)

    def _drop(self, run_id):
        actor, _ = self.trials.pop(run_id)
        self._unanswered.pop(run_id, None)
        self._ended_here.discard(run_id)
        _kill(actor)

    def _write(self, run_id, records):
        for kind, fields in records:
            if fields.get("state") and fields["state"] not in LIVE_STATES:
                self._ended_here.add(run_id)
            if kind == "append":
                for k in IDENTITY:
                    fields.pop(k, None)
                self.db.append(run_id, **fields)
            elif kind == "update":
                fields = {k: v for k, v in fields.items() if k not in IDENTITY}
                if fields:
                    self.db.update_run(run_id, **fields)
            elif kind == "checkpoint":
                path = self.db.checkpoint_path(run_id)
                path.parent.mkdir(exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(fields["blob"])
                os.replace(tmp, path)  # a page never reads half a model

    def stop(self, run_id):
        self.db.send(run_id, "stop")  # the next pump carries it to the trial

    def close(self):
        if not self.lost:  # a lost cluster takes its actors with it; calls into it would only hang
            for actor in [a for a, _ in self.trials.values()] + [p.actor for p in self.pending.values()]:
                _kill(actor)
        self.trials.clear()
        self.pending.clear()
        if ray.is_initialized():  # bounded: a shutdown that waits on a lost head must not keep the process
            t = threading.Thread(target=ray.shutdown, daemon=True)
            t.start()
            t.join(10)
        if self._own_db:
            self.db.close()


def serve(db_path, run_id, orphan_timeout, start_paused, server, address):
    """A dashboard run's process when the server has ZTH_RAY_ADDRESS: the run trains in an actor on the cluster,
    and this process relays -- commands out, records in -- keeping the local worker's rules: SIGTERM or SIGINT
    stop the run, and so does no page watching it for orphan_timeout seconds. It loads no torch (a few percent
    of a core and ~130 MB a run: BENCHMARKS.md). Returns the process's exit code."""
    db, signals, parent = process.start(db_path, server)
    try:
        return _relay(db, run_id, address, orphan_timeout, start_paused, signals, parent)
    finally:
        db.close()


def _relay(db, run_id, address, orphan_timeout, start_paused, signals, parent):
    try:
        cluster = RayCluster(address, db=db)
    except Exception as e:  # ClusterError's line; anything else ray.init raises (not Ray there, another version)
        process.log_traceback()
        db.update_run(run_id, state="failed", meta=dict(message=str(e) if isinstance(e, ClusterError) else
                                                        f"could not join the Ray cluster at {address}: {e!r}"))
        return 0
    process.catch_signals(signals)  # ray.init replaced our SIGTERM handler with its own sys.exit
    try:
        cluster.launch(run_id, start_paused)
        started, why = time.time(), None
        while run_id in cluster.trials or run_id in cluster.pending:
            if why is None and signals:
                why = process.signal_reason(signals[0])
            # (a runs file another program kept locked kept the pages' heartbeats out too: they get the time again)
            if why is None and time.time() - max(cluster.heard.get(run_id, 0.0), started, db.busy_until) > orphan_timeout:
                why = process.orphan_reason(orphan_timeout, parent)
            cluster.pump({run_id: f"stop:{why}"} if why else None)  # again until the run ends: a stop is idempotent
            time.sleep(POLL_SECONDS)
        return 0
    except Exception as e:  # a bug here: the run ends with it rather than waiting for a reader to find us gone
        process.log_traceback()
        db.end_if_live(run_id, f"its relay to the Ray cluster at {address} failed: {e!r}")
        return 0
    finally:
        cluster.close()


def _bounded(fn, seconds):
    """fn()'s value, or None when it raised or took longer than seconds (it finishes in a daemon thread)."""
    box = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    return box[0] if box else None


def _kill(actor):
    try:
        ray.kill(actor)
    except Exception:  # gone with its node: nothing to kill
        pass


def _cause(e):
    text = str(e).strip().splitlines()
    return next((line.strip() for line in text if "died" in line or "exit" in line.lower()), text[0] if text else
                type(e).__name__)


def _package(name):
    """A package's folder, found without importing it (data's datasets would load torch here)."""
    return os.path.dirname(importlib.util.find_spec(name).origin)


if __name__ == "__main__":  # python -m core.runs.ray_backend DB RUN_ID ORPHAN_SECONDS --ray=ADDRESS [--paused] [--server=PID]
    from core.runs import ray_backend  # the module by its name: Ray sends its TrialActor by reference, not __main__'s
    db_path, run_id, orphan, opts = process.arguments(sys.argv[1:])
    sys.exit(ray_backend.serve(db_path, run_id, orphan, opts["start_paused"], opts["server"], opts["ray"]))
