"""Prints benches/compare.sh's results as one Markdown table.

Usage: compare_table.py RESULTS.tsv MODE SECONDS COMMIT LOAD_BEFORE LOAD_AFTER

Each line of RESULTS.tsv is one run: shape, side (tigerbeetle, stream, unary, iso8583, echo;
in cluster mode cluster-stream, cluster-unary, single-stream, single-unary, followers),
approvals/s, approvals, p50 ms, p99 ms (of the approvals), server CPU s, client CPU s, client
cores, audit, note. Tandem's rows are set beside TigerBeetle's row of the same shape (approvals/s
closed loop, with server CPU per 1,000 approvals; p99 in the open-loop shape, where both run
at the same rate) and its unary rows beside the echo row of the same shape. In cluster mode
(the `tigerbeetle` rows are three replicas) each cluster-X row is also set beside the
single-X row of its shape: Tandem's cluster against its own single node.
"""

import sys

CLIENT_BOUND = 0.8  # of a core


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def per_1000(cpu_s, approvals):
    cpu, count = number(cpu_s), number(approvals)
    if cpu is None or not count:
        return "-"
    return f"{cpu * 1000 / count:.3f}"


def ratio(ours, theirs):
    if not ours or not theirs:
        return "-"
    return f"{ours / theirs:.2f}×"


def main():
    path, mode, seconds, commit, load_before, load_after = sys.argv[1:7]
    runs = []
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 11:
                continue
            shape, side, rate, count, p50, p99, server, client, cores, audit, note = fields[:11]
            runs.append(dict(shape=shape, side=side, rate=number(rate) or 0.0, count=count,
                             p50=p50, p99=p99, server=server, client=client,
                             cores=number(cores) or 0.0, audit=audit, note=note))
    peer = {r["shape"]: r for r in runs if r["side"] == "tigerbeetle"}
    echo = {r["shape"]: r for r in runs if r["side"] == "echo"}
    single = {(r["shape"], r["side"]): r for r in runs if r["side"].startswith("single-")}
    cluster = bool(single)
    print(f"## Tandem beside TigerBeetle: {mode} mode, {seconds} s a shape\n")
    print(f"Commit {commit}; load average {load_before} before, {load_after} after; "
          "approvals only (TigerBeetle: transfers created; Tandem: DE 39 00/10 answers).\n")
    if cluster:
        print("Cluster mode: `tigerbeetle` rows are three replicas, `cluster-*` rows three Tandem "
              "nodes with callers spread over all three, `single-*` one Tandem node.\n")
    extra = " vs single node |" if cluster else ""
    print("| shape | side | approvals/s | p50 ms | p99 ms | server CPU s / 1k | "
          f"client CPU s / 1k | vs TigerBeetle | vs echo |{extra} audit | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if cluster else ""))
    for r in runs:
        notes = [r["note"]] if r["side"] != "tigerbeetle" or "FAILED" in r["note"] else []
        versus_peer, versus_echo = "-", "-"
        theirs = peer.get(r["shape"])
        if r["side"] not in ("tigerbeetle", "echo") and theirs:
            if r["shape"].startswith("hot1-open"):
                ours_p99, their_p99 = number(r["p99"]), number(theirs["p99"])
                if ours_p99 and their_p99:
                    versus_peer = f"p99 {ours_p99 / their_p99:.2f}×"
            else:
                versus_peer = ratio(r["rate"], theirs["rate"])
                ours_cpu = number(per_1000(r["server"], r["count"]))
                their_cpu = number(per_1000(theirs["server"], theirs["count"]))
                if ours_cpu and their_cpu:
                    versus_peer += f" (server CPU / 1k {ours_cpu / their_cpu:.1f}×)"
        if r["side"] == "unary" and r["shape"] in echo:
            versus_echo = ratio(r["rate"], echo[r["shape"]]["rate"])
        versus_single = ""
        if cluster:
            alone = single.get((r["shape"], r["side"].replace("cluster-", "single-", 1)))
            versus_single = " - |"
            if r["side"].startswith("cluster-") and alone:
                versus_single = f" {ratio(r['rate'], alone['rate'])} |"
        if r["cores"] > CLIENT_BOUND:
            notes.append(f"**client-bound** ({r['cores']:.2f} of a core)")
        print(f"| {r['shape']} | {r['side']} | {r['rate']:.0f} | {r['p50']} | {r['p99']} | "
              f"{per_1000(r['server'], r['count'])} | {per_1000(r['client'], r['count'])} | "
              f"{versus_peer} | {versus_echo} |{versus_single} {r['audit']} | "
              f"{'; '.join(n for n in notes if n)} |")


if __name__ == "__main__":
    main()
