#!/usr/bin/env python3
"""Floor cost of distshot's durable request-reply pattern on RabbitMQ, without Dramatiq.

Per request: the dispatcher publishes a persistent message (delivery_mode=2) to a durable
queue with publisher confirms (or a tx per batch); a worker consumes it (manual ack,
prefetch), publishes a persistent reply to a durable per-batch reply queue with a publisher
confirm, and acks the request only after that confirm; the dispatcher consumes the replies
(manual ack), writes them to a file, fsyncs in groups (256 records or 50 ms) and then acks
the group with multiple=True.

Client designs (roles, each one OS process):
  block : pika BlockingConnection.  Dispatcher publishes in AMQP transactions of --tx-batch
          messages (as distshot's publish_batch does); worker publishes each reply with
          confirm_delivery, blocking on every confirm, then acks (as Dramatiq does).
  aio   : aio-pika, public API.  Dispatcher: one task per publish, each awaiting its confirm,
          at most --window requests unanswered.  Worker: aio-pika runs each delivery as a task;
          the task publishes the reply, awaits its confirm, then acks that request.
  raw   : aiormq (aio-pika's own protocol layer) used directly: same task-per-message design
          as aio, without aio-pika's Message/IncomingMessage wrappers and without awaiting
          a socket drain per frame (wait=False).
  sel   : pika SelectConnection (callbacks, no tasks).  Same pipelining as aio, but confirms
          are tracked by sequence number (the broker confirms with multiple=True); the worker
          acks, with multiple=True, exactly the requests whose replies are confirmed.

Usage (from the repository root; variants a*, s* need only pika, which distshot installs;
b, c, r* need `pip install aio-pika orjson`):
  .venv/bin/python bench/amqp_floor.py bench [--n 20000] [--reps 3] [--variants a,s1,s2]
Results: a table on stdout and every run as JSON in bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections import deque

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")
ACK_GROUP = 256
ACK_AGE = 0.05

try:
    import orjson

    def dumps(o):
        return orjson.dumps(o)

    loads = orjson.loads
except ImportError:  # pragma: no cover

    def dumps(o):
        return json.dumps(o, separators=(",", ":")).encode()

    loads = json.loads

if os.environ.get("FLOOR_JSON") == "std":

    def dumps(o):
        return json.dumps(o, separators=(",", ":")).encode()

    loads = json.loads


# ----------------------------------------------------------------------------- payloads
def request_body(i: int) -> bytes:
    return dumps(
        {
            "id": f"req-{i:08d}",
            "batch": "b-2f6c1e0a9d4b4c7e8f1a2b3c4d5e6f70",
            "url": f"https://www.example.com/some/fairly/long/path/page-{i}.html?utm_source=floor",
            "viewport": [1366, 768],
            "full_page": True,
            "format": "png",
            "timeout_s": 30,
            "wait_until": "load",
            "engine": "null",
            "attempt": 1,
            "store": "file:///var/lib/distshot/out?fsync=0",
        }
    )


def reply_body(req: dict) -> bytes:
    return dumps(
        {
            "id": req["id"],
            "batch": req["batch"],
            "url": req["url"],
            "status": "ok",
            "http_status": 200,
            "bytes": 123456,
            "sha256": "9f" * 32,
            "path": "file:///var/lib/distshot/out/" + req["id"] + ".png",
            "elapsed_ms": 1,
            "worker": os.getpid(),
        }
    )


def rusage_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


ACKED = [0]  # requests acked by this worker (reported on SIGTERM)


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def wait_go() -> None:
    emit({"ready": True})
    line = sys.stdin.readline()
    if line.strip() != "GO":
        sys.exit(0)


class ReplyFile:
    """Buffered writes, fsync in groups; the caller acks the group after sync()."""

    def __init__(self, path: str):
        self.f = open(path, "wb")
        self.pending = 0
        self.last = time.monotonic()
        self.fsyncs = 0
        self.ids = set()

    def add(self, body: bytes) -> None:
        self.f.write(body)
        self.f.write(b"\n")
        self.pending += 1
        # cheap correctness check: every request answered exactly once
        self.ids.add(body[7:19])

    def due(self, now: float) -> bool:
        return self.pending >= ACK_GROUP or (self.pending and now - self.last >= ACK_AGE)

    def sync(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.fsyncs += 1
        self.pending = 0
        self.last = time.monotonic()


def finish(args, t0, c0, rf: ReplyFile, received, extra=None):
    t1 = time.perf_counter()
    c1 = rusage_cpu()
    rf.f.close()
    out = {
        "role": "dispatcher",
        "n": args.n,
        "received": received,
        "distinct": len(rf.ids),
        "elapsed": t1 - t0,
        "cpu": c1 - c0,
        "fsyncs": rf.fsyncs,
    }
    out.update(extra or {})
    emit(out)


def props_kwargs(args):
    return {"delivery_mode": 2 if args.persistent else 1}


# ----------------------------------------------------------------------------- block
def disp_block(args):
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(URL))
    pub = conn.channel()
    pub.tx_select()
    con = conn.channel()
    con.basic_qos(prefetch_count=args.window * 2)
    rf = ReplyFile(args.out)
    st = {"received": 0, "tag": 0}

    def flush():
        rf.sync()
        con.basic_ack(st["tag"], multiple=True)

    def on_reply(ch, method, props, body):
        rf.add(body)
        st["received"] += 1
        st["tag"] = method.delivery_tag
        if rf.pending >= ACK_GROUP:
            flush()

    con.basic_consume(args.reply, on_reply, auto_ack=False)
    bodies = [request_body(i) for i in range(8)]  # warm imports
    del bodies
    wait_go()
    t0, c0 = time.perf_counter(), rusage_cpu()
    sent = 0
    props = pika.BasicProperties(reply_to=args.reply, **props_kwargs(args))
    n = args.n
    while st["received"] < n:
        room = min(args.tx_batch, n - sent, args.window - (sent - st["received"]))
        if room > 0:
            for _ in range(room):
                pub.basic_publish("", args.req, request_body(sent), props)
                sent += 1
            pub.tx_commit()
            conn.process_data_events(time_limit=0)
        else:
            conn.process_data_events(time_limit=0.005)
        if rf.pending and time.monotonic() - rf.last >= ACK_AGE:
            flush()
    if rf.pending:
        flush()
    finish(args, t0, c0, rf, st["received"])
    conn.close()


def work_block(args):
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_qos(prefetch_count=args.prefetch)
    props = pika.BasicProperties(**props_kwargs(args))

    def on_req(ch_, method, p, body):
        reply = reply_body(loads(body))
        ch.basic_publish("", p.reply_to, reply, props, mandatory=True)  # blocks for confirm
        ch.basic_ack(method.delivery_tag)
        ACKED[0] += 1

    ch.basic_consume(args.req, on_req, auto_ack=False)
    emit({"ready": True})
    ch.start_consuming()


# ----------------------------------------------------------------------------- aio
async def disp_aio_main(args):
    import aio_pika

    conn = await aio_pika.connect(URL)
    pub = await conn.channel(publisher_confirms=True)
    con = await conn.channel(publisher_confirms=False)
    await con.set_qos(prefetch_count=args.window * 2)
    rq = await con.get_queue(args.reply, ensure=False)
    ex = pub.default_exchange
    rf = ReplyFile(args.out)
    sem = asyncio.Semaphore(args.window)
    done = asyncio.get_running_loop().create_future()
    st = {"received": 0, "last": None, "acked": 0}
    dm = (
        aio_pika.DeliveryMode.PERSISTENT
        if args.persistent
        else aio_pika.DeliveryMode.NOT_PERSISTENT
    )

    async def flush():
        msg = st["last"]
        rf.sync()
        if msg.delivery_tag > st["acked"]:
            st["acked"] = msg.delivery_tag
            await msg.ack(multiple=True)

    async def on_reply(msg):
        rf.add(msg.body)
        st["received"] += 1
        st["last"] = msg
        sem.release()
        if rf.pending >= ACK_GROUP or st["received"] == args.n:
            await flush()
            if st["received"] == args.n and not done.done():
                done.set_result(None)

    async def ticker():
        while True:
            await asyncio.sleep(ACK_AGE / 2)
            if rf.pending and time.monotonic() - rf.last >= ACK_AGE:
                await flush()

    await rq.consume(on_reply, no_ack=False)
    loop_ = asyncio.get_running_loop()
    await loop_.run_in_executor(None, wait_go)
    t0, c0 = time.perf_counter(), rusage_cpu()
    tick = asyncio.create_task(ticker())
    tasks = []
    for i in range(args.n):
        await sem.acquire()
        m = aio_pika.Message(request_body(i), delivery_mode=dm, reply_to=args.reply)
        tasks.append(asyncio.create_task(ex.publish(m, routing_key=args.req)))
    await asyncio.gather(*tasks)  # every request confirmed (raises on nack)
    await done
    tick.cancel()
    finish(args, t0, c0, rf, st["received"])
    await conn.close()


async def work_aio_main(args):
    import aio_pika

    conn = await aio_pika.connect(URL)
    ch = await conn.channel(publisher_confirms=True)
    await ch.set_qos(prefetch_count=args.prefetch)
    q = await ch.get_queue(args.req, ensure=False)
    ex = ch.default_exchange
    dm = (
        aio_pika.DeliveryMode.PERSISTENT
        if args.persistent
        else aio_pika.DeliveryMode.NOT_PERSISTENT
    )

    async def on_req(msg):
        reply = reply_body(loads(msg.body))
        await ex.publish(aio_pika.Message(reply, delivery_mode=dm), routing_key=msg.reply_to)
        await msg.ack()
        ACKED[0] += 1

    await q.consume(on_req, no_ack=False)
    emit({"ready": True})
    await asyncio.Future()


# ----------------------------------------------------------------------------- raw (aiormq)
async def disp_raw_main(args):
    import aiormq
    from aiormq import spec

    conn = await aiormq.connect(URL)
    pub = await conn.channel(publisher_confirms=True)
    con = await conn.channel(publisher_confirms=False)
    await con.basic_qos(prefetch_count=args.window * 2)
    rf = ReplyFile(args.out)
    sem = asyncio.Semaphore(args.window)
    done = asyncio.get_running_loop().create_future()
    st = {"received": 0, "tag": 0, "acked": 0}

    async def flush():
        rf.sync()
        if st["tag"] > st["acked"]:
            st["acked"] = st["tag"]
            await con.basic_ack(st["tag"], multiple=True, wait=False)

    async def on_reply(msg):
        rf.add(msg.body)
        st["received"] += 1
        st["tag"] = msg.delivery.delivery_tag
        sem.release()
        if rf.pending >= ACK_GROUP or st["received"] == args.n:
            await flush()
            if st["received"] == args.n and not done.done():
                done.set_result(None)

    async def ticker():
        while True:
            await asyncio.sleep(ACK_AGE / 2)
            if rf.pending and time.monotonic() - rf.last >= ACK_AGE:
                await flush()

    await con.basic_consume(args.reply, on_reply, no_ack=False)
    await asyncio.get_running_loop().run_in_executor(None, wait_go)
    t0, c0 = time.perf_counter(), rusage_cpu()
    tick = asyncio.create_task(ticker())
    tasks = []
    dm = 2 if args.persistent else 1
    for i in range(args.n):
        await sem.acquire()
        props = spec.Basic.Properties(delivery_mode=dm, reply_to=args.reply, message_id=str(i))
        tasks.append(
            asyncio.create_task(
                pub.basic_publish(
                    request_body(i), routing_key=args.req, properties=props, wait=False
                )
            )
        )
    for r in await asyncio.gather(*tasks):
        if not isinstance(r, spec.Basic.Ack):
            raise SystemExit(f"publish not acked: {r}")
    await done
    tick.cancel()
    finish(args, t0, c0, rf, st["received"])
    await conn.close()


async def work_raw_main(args):
    import aiormq
    from aiormq import spec

    conn = await aiormq.connect(URL)
    ch = await conn.channel(publisher_confirms=True)
    await ch.basic_qos(prefetch_count=args.prefetch)
    dm = 2 if args.persistent else 1

    async def on_req(msg):
        reply = reply_body(loads(msg.body))
        props = spec.Basic.Properties(delivery_mode=dm, message_id=str(msg.delivery.delivery_tag))
        r = await ch.basic_publish(
            reply,
            routing_key=msg.header.properties.reply_to,
            properties=props,
            mandatory=True,
            wait=False,
        )
        if not isinstance(r, spec.Basic.Ack):
            raise SystemExit(f"reply not acked: {r}")
        await ch.basic_ack(msg.delivery.delivery_tag, wait=False)
        ACKED[0] += 1

    await ch.basic_consume(args.req, on_req, no_ack=False)
    emit({"ready": True})
    await asyncio.Future()


# ----------------------------------------------------------------------------- sel
def disp_sel(args):
    import pika
    from pika.adapters.select_connection import SelectConnection

    rf = ReplyFile(args.out)
    st = {
        "sent": 0,
        "received": 0,
        "confirmed": 0,
        "tag": 0,
        "t0": 0.0,
        "c0": 0.0,
        "pub": None,
        "con": None,
        "ready": 0,
        "finished": False,
    }
    props = pika.BasicProperties(reply_to=args.reply, **props_kwargs(args))
    n = args.n

    def fill():
        pub = st["pub"]
        while st["sent"] < n and st["sent"] - st["received"] < args.window:
            pub.basic_publish("", args.req, request_body(st["sent"]), props)
            st["sent"] += 1

    def on_confirm(frame):
        m = frame.method
        if m.NAME != "Basic.Ack":
            raise SystemExit(f"publish not acked: {m}")
        st["confirmed"] = max(
            st["confirmed"], m.delivery_tag
        )  # tags are sequential from 1; multiple covers all <=
        check_done()

    def flush():
        rf.sync()
        st["con"].basic_ack(st["tag"], multiple=True)

    def check_done():
        if not st["finished"] and st["received"] == n and st["confirmed"] == n and not rf.pending:
            st["finished"] = True
            finish(args, st["t0"], st["c0"], rf, st["received"])
            conn.close()

    def on_reply(ch, method, p, body):
        rf.add(body)
        st["received"] += 1
        st["tag"] = method.delivery_tag
        if rf.pending >= ACK_GROUP or st["received"] == n:
            flush()
        fill()
        check_done()

    def ticker():
        if st["finished"]:
            return
        if rf.pending and time.monotonic() - rf.last >= ACK_AGE:
            flush()
            check_done()
        conn.ioloop.call_later(ACK_AGE / 2, ticker)

    def start():
        wait_go()
        st["t0"], st["c0"] = time.perf_counter(), rusage_cpu()
        conn.ioloop.call_later(ACK_AGE / 2, ticker)
        fill()

    def on_con_qos(_):
        st["con"].basic_consume(args.reply, on_reply, auto_ack=False)
        st["ready"] += 1
        if st["ready"] == 2:
            start()

    def on_con(ch):
        st["con"] = ch
        ch.basic_qos(prefetch_count=args.window * 2, callback=on_con_qos)

    def on_confirm_ok(_):
        st["ready"] += 1
        if st["ready"] == 2:
            start()

    def on_pub(ch):
        st["pub"] = ch
        ch.confirm_delivery(on_confirm, callback=on_confirm_ok)

    def on_open(c):
        c.channel(on_open_callback=on_pub)
        c.channel(on_open_callback=on_con)

    conn = SelectConnection(
        pika.URLParameters(URL),
        on_open_callback=on_open,
        on_close_callback=lambda c, e: c.ioloop.stop(),
    )
    conn.ioloop.start()


def work_sel(args):
    import pika
    from pika.adapters.select_connection import SelectConnection

    props = pika.BasicProperties(**props_kwargs(args))
    st = {"seq": 0, "ch": None, "upto": 0}
    single = set()  # confirmed out of order, not yet reachable from the front
    pending = deque()  # (reply publish seq, request delivery tag), both increasing

    def on_req(ch, method, p, body):
        reply = reply_body(loads(body))
        ch.basic_publish("", p.reply_to, reply, props, mandatory=True)
        st["seq"] += 1
        pending.append((st["seq"], method.delivery_tag))

    def on_confirm(frame):
        m = frame.method
        if m.NAME != "Basic.Ack":
            raise SystemExit(f"reply not acked: {m}")
        last = None
        if m.multiple:
            st["upto"] = max(st["upto"], m.delivery_tag)
        else:
            single.add(m.delivery_tag)
        while pending and (pending[0][0] <= st["upto"] or pending[0][0] in single):
            seq, last = pending.popleft()
            single.discard(seq)
            ACKED[0] += 1
        if last is not None:
            # acks every request up to `last`: exactly those whose replies are now confirmed
            st["ch"].basic_ack(last, multiple=True)

    def on_qos(_):
        st["ch"].basic_consume(args.req, on_req, auto_ack=False)
        emit({"ready": True})

    def on_confirm_ok(_):
        st["ch"].basic_qos(prefetch_count=args.prefetch, callback=on_qos)

    def on_ch(ch):
        st["ch"] = ch
        ch.add_on_return_callback(lambda *a: sys.stderr.write("returned reply\n"))
        ch.confirm_delivery(on_confirm, callback=on_confirm_ok)

    conn = SelectConnection(
        pika.URLParameters(URL), on_open_callback=lambda c: c.channel(on_open_callback=on_ch)
    )
    conn.ioloop.start()


# ----------------------------------------------------------------------------- orchestration
def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICK


def beam_pid() -> int:
    best = None
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if (
            b"beam.smp" in cmd
            and b"rabbit" in cmd
            and b"rabbitmqctl" not in cmd
            and b"rabbitmq-cli" not in cmd
        ):
            start = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[19])
            if best is None or start < best[0]:
                best = (start, int(p))
    return best[1]


VARIANTS = {
    # name: (design, workers, persistent, queue version)
    "a": ("block", 1, True, 1),
    "a2": ("block", 2, True, 1),
    "at": ("block", 1, False, 1),
    "b": ("aio", 1, True, 1),
    "c": ("aio", 2, True, 1),
    "r1": ("raw", 1, True, 1),
    "r2": ("raw", 2, True, 1),
    "s1": ("sel", 1, True, 1),
    "s2": ("sel", 2, True, 1),
    "s1v2": ("sel", 1, True, 2),
    "s1t": ("sel", 1, False, 1),
    "bv2": ("aio", 1, True, 2),
    "bt": ("aio", 1, False, 1),
}


def declare(names, durable, qv):
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    args = {"x-queue-version": qv} if qv == 2 else None
    for q in names:
        ch.queue_declare(q, durable=durable, arguments=args)
    conn.close()


def cleanup(names):
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    left = {}
    for q in names:
        try:
            left[q] = ch.queue_declare(q, passive=True).method.message_count
        except Exception:
            ch = conn.channel()
            left[q] = None
        ch.queue_delete(q)
    conn.close()
    return left


def run_one(name, n, rep, window, prefetch, tx_batch):
    design, workers, persistent, qv = VARIANTS[name]
    tag = f"floor.{os.getpid()}.{name}.{rep}"
    req, reply = tag + ".req", tag + ".reply"
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    out = os.path.join(HERE, "out", tag + ".jsonl")
    load_before = os.getloadavg()
    bp = beam_pid()
    # 1 s idle sample: is anything else using the broker / the CPUs?
    b0, m0 = proc_cpu(bp), machine_busy()
    time.sleep(1.0)
    idle_beam, idle_busy = proc_cpu(bp) - b0, machine_busy() - m0
    declare([req, reply], persistent, qv)
    common = [
        "--req",
        req,
        "--reply",
        reply,
        "--n",
        str(n),
        "--window",
        str(window),
        "--prefetch",
        str(prefetch),
        "--tx-batch",
        str(tx_batch),
        "--out",
        out,
        "--persistent",
        "1" if persistent else "0",
    ]
    py = sys.executable
    me = os.path.abspath(__file__)
    ws = []
    for _ in range(workers):
        w = subprocess.Popen(
            [py, me, "role", f"work-{design}", *common],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert json.loads(w.stdout.readline()).get("ready")
        ws.append(w)
    d = subprocess.Popen(
        [py, me, "role", f"disp-{design}", *common],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert json.loads(d.stdout.readline()).get("ready")
    w0 = [proc_cpu(w.pid) for w in ws]
    b0, m0 = proc_cpu(bp), machine_busy()
    d.stdin.write("GO\n")
    d.stdin.flush()
    res = json.loads(d.stdout.readline())
    w1 = [proc_cpu(w.pid) for w in ws]
    b1, m1 = proc_cpu(bp), machine_busy()
    d.wait(timeout=60)
    time.sleep(0.3)  # let the last request acks reach the broker
    acked = 0
    for w in ws:
        w.send_signal(signal.SIGTERM)
        acked += json.loads(w.stdout.readline())["acked"]
        w.wait(timeout=30)
    left = cleanup([req, reply])
    os.remove(out)
    el = res["elapsed"]
    wcpu = sum(b - a for a, b in zip(w0, w1, strict=False))
    beam = b1 - b0
    busy = m1 - m0
    r = {
        "variant": name,
        "rep": rep,
        "design": design,
        "workers": workers,
        "persistent": persistent,
        "queue_version": qv,
        "n": n,
        "received": res["received"],
        "distinct": res["distinct"],
        "left_in_queues": left,
        "requests_acked_by_workers": acked,
        "elapsed_s": el,
        "req_per_s": n / el,
        "cpu_ms_per_req": {
            "dispatcher": 1000 * res["cpu"] / n,
            "workers": 1000 * wcpu / n,
            "beam": 1000 * beam / n,
            "machine_total": 1000 * busy / n,
            "other": 1000 * (busy - res["cpu"] - wcpu - beam) / n,
        },
        "cpu_cores_used": {
            "dispatcher": res["cpu"] / el,
            "workers": wcpu / el,
            "beam": beam / el,
            "machine": busy / el,
        },
        "fsyncs": res["fsyncs"],
        "load_before": load_before,
        "idle_sample_1s": {"beam_cpu_s": idle_beam, "machine_busy_s": idle_busy},
    }
    return r


def bench(a):
    names = a.variants.split(",")
    results = []
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", time.strftime("%Y%m%d-%H%M%S") + ".json")
    import pika

    c = pika.BlockingConnection(pika.URLParameters(URL))
    sp = c._impl.server_properties
    version = sp.get("version", b"?")
    version = version.decode() if isinstance(version, bytes) else version
    c.close()
    print(
        f"RabbitMQ {version}; N={a.n}; window={a.window}; worker prefetch={a.prefetch}; "
        f"tx batch (block)={a.tx_batch}; json={'orjson' if 'orjson' in sys.modules and os.environ.get('FLOOR_JSON') != 'std' else 'stdlib'}",
        flush=True,
    )
    for rep in range(1, a.reps + 1):
        for name in names:
            r = run_one(name, a.n, rep, a.window, a.prefetch, a.tx_batch)
            r["rabbitmq"] = version
            results.append(r)
            cm = r["cpu_ms_per_req"]
            print(
                f"rep{rep} {name:5s} {r['req_per_s']:7.0f} req/s  disp {cm['dispatcher']:.3f} "
                f"work {cm['workers']:.3f} beam {cm['beam']:.3f} other {cm['other']:.3f} ms/req "
                f"load1={r['load_before'][0]:.2f} idle-busy={r['idle_sample_1s']['machine_busy_s']:.2f}s "
                f"recv={r['received']}/{r['distinct']} wacked={r['requests_acked_by_workers']} left={list(r['left_in_queues'].values())}",
                flush=True,
            )
            with open(path, "w") as f:
                json.dump(results, f, indent=1)
    print("\nmedians over reps (CPU in ms per request):")
    print(
        f"{'var':5s} {'design':6s} {'wk':>2s} {'pers':>4s} {'qv':>2s} {'req/s':>7s} "
        f"{'disp':>6s} {'work':>6s} {'beam':>6s} {'sum':>6s} {'other':>6s} {'maxload1':>8s}"
    )
    for name in names:
        rs = [r for r in results if r["variant"] == name]
        med = lambda k: statistics.median(r["cpu_ms_per_req"][k] for r in rs)  # noqa: E731
        d, w, b = med("dispatcher"), med("workers"), med("beam")
        design, workers, persistent, qv = VARIANTS[name]
        print(
            f"{name:5s} {design:6s} {workers:2d} {'y' if persistent else 'n':>4s} {qv:2d} "
            f"{statistics.median(r['req_per_s'] for r in rs):7.0f} {d:6.3f} {w:6.3f} {b:6.3f} "
            f"{d + w + b:6.3f} {med('other'):6.3f} {max(r['load_before'][0] for r in rs):8.2f}"
        )
    print(f"\nall runs: {path}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--n", type=int, default=20000)
    b.add_argument("--reps", type=int, default=3)
    b.add_argument("--variants", default="a,a2,at,b,c,r1,r2,s1,s2,s1v2,s1t")
    b.add_argument("--window", type=int, default=2000)
    b.add_argument("--prefetch", type=int, default=500)
    b.add_argument("--tx-batch", type=int, default=500)
    r = sub.add_parser("role")
    r.add_argument("role")
    for k, t in (
        ("--req", str),
        ("--reply", str),
        ("--n", int),
        ("--window", int),
        ("--prefetch", int),
        ("--tx-batch", int),
        ("--out", str),
        ("--persistent", int),
    ):
        r.add_argument(k, type=t)
    a = p.parse_args()
    if a.cmd == "bench":
        bench(a)
        return

    def on_term(*_):
        emit({"acked": ACKED[0]})
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    fn = {
        "disp-block": disp_block,
        "work-block": work_block,
        "disp-aio": lambda x: asyncio.run(disp_aio_main(x)),
        "work-aio": lambda x: asyncio.run(work_aio_main(x)),
        "disp-raw": lambda x: asyncio.run(disp_raw_main(x)),
        "work-raw": lambda x: asyncio.run(work_raw_main(x)),
        "disp-sel": disp_sel,
        "work-sel": work_sel,
    }[a.role]
    fn(a)


if __name__ == "__main__":
    main()
