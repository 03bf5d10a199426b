"""The night's report: per job, the Pareto front (plot and table), the best point under
the job's constraints, and what changed since the previous finished night of the same
configuration, as self-contained HTML (the plot inlined) and Markdown (plot beside it).

A regression is, for a point or baseline measured on both nights:

* latency: the median grew by more than ``latency_threshold`` (relative) and lies above
  the previous night's p90 (so run-to-run noise of one point does not alarm);
* AP: it dropped by more than ``ap_threshold``;
* status: it worked the previous night and fails now;
* drift: a re-measured point is slower than its stored latency by the same rule;
* best point: the best point under the job's constraints is slower (or gone).

A latency flagged noisy (:mod:`pose_tuner.measure.noise`: timed on a busy machine, twice)
on either night is compared only against the wider ``noisy_latency_threshold`` (default
1.0: twice as slow; contention from a concurrent search slowed timings by 1.55x at most in
``benchmarks/concurrent_searches.py``): a slowdown beyond what a busy machine explains is
still a regression, a smaller one is listed as ignored.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass, field

from pose_tuner.store.pareto import NoCandidate, best_under, pareto_front
from pose_tuner.store.records import CandidateRecord
from pose_tuner.nightly.config import JobConfig, NightlyConfig
from pose_tuner.nightly.queue import Run, WorkQueue


@dataclass(frozen=True)
class Change:
    job: str
    key: str
    what: str          # latency | ap | status | drift | best | front | fixed | faster | noisy
    message: str
    regression: bool


@dataclass(frozen=True)
class Report:
    html_path: str
    md_path: str
    regressions: tuple[Change, ...]
    changes: tuple[Change, ...]
    summary: str


def _slower(now: float, before: float, before_p90: float | None, thr: float) -> bool:
    return now > before * (1 + thr) and now > (before_p90 or before)


def _pct(now: float, before: float) -> str:
    return f"{(now / before - 1) * 100:+.0f}%"


def compare_items(cur: list[dict], prev: list[dict], cfg: NightlyConfig) -> list[Change]:
    """Changes between two nights' items (see the module docstring)."""
    out: list[Change] = []
    before = {(i["job"], i["kind"], i["key"]): i for i in prev if i["state"] == "done"}
    for it in cur:
        if it["state"] != "done":
            continue
        job, key = it["job"], it["key"]
        if it["kind"] == "job":  # the job could not even start
            out.append(Change(job, key, "status", f"the job cannot run: {it['error']}", True))
            continue
        if it["kind"] == "remeasure":
            p = json.loads(it["payload"])
            if it["status"] == "ok" and p.get("stored_median_ms"):
                now, was = it["latency_median_ms"], p["stored_median_ms"]
                noisy = bool(it.get("latency_noisy"))
                thr = _threshold(cfg, noisy)
                if _slower(now, was, p.get("stored_p90_ms"), thr):
                    out.append(Change(job, key, "drift", f"re-measured {now:.3f} ms against "
                                      f"{was:.3f} ms stored ({_pct(now, was)}): the device or "
                                      "its environment got slower" + _despite(noisy), True))
                elif noisy:
                    out.append(_ignored(job, key, "the re-measurement"))
            elif it["status"] not in ("ok", "skipped"):
                out.append(Change(job, key, "drift", f"re-measurement failed: {it['error']}", True))
            continue
        old = before.get((job, it["kind"], key))
        if old is None:
            continue
        if old["status"] == "ok" and it["status"] not in ("ok", "skipped"):
            out.append(Change(job, key, "status", f"worked last night, fails now: {it['error']}",
                              True))
            continue
        if old["status"] != "ok" and it["status"] == "ok":
            out.append(Change(job, key, "fixed", "failed last night, works now", False))
            continue
        if old["status"] != "ok" or it["status"] != "ok":
            continue
        now, was = it["latency_median_ms"], old["latency_median_ms"]
        noisy = bool(it.get("latency_noisy") or old.get("latency_noisy"))
        thr = _threshold(cfg, noisy)
        if now is not None and was:
            if _slower(now, was, old["latency_p90_ms"], thr):
                out.append(Change(job, key, "latency", f"median {was:.3f} -> {now:.3f} ms "
                                  f"({_pct(now, was)})" + _despite(noisy), True))
            elif noisy:
                out.append(_ignored(job, key, "tonight's" if it.get("latency_noisy")
                                    else "the previous night's"))
            elif now * (1 + cfg.latency_threshold) < was:
                out.append(Change(job, key, "faster", f"median {was:.3f} -> {now:.3f} ms "
                                  f"({_pct(now, was)})", False))
        if it["ap"] is not None and old["ap"] is not None:
            if it["ap"] < old["ap"] - cfg.ap_threshold:
                out.append(Change(job, key, "ap", f"AP {old['ap']:.3f} -> {it['ap']:.3f}", True))
            elif it["ap"] > old["ap"] + cfg.ap_threshold:
                out.append(Change(job, key, "ap", f"AP {old['ap']:.3f} -> {it['ap']:.3f}", False))
    return out


def _ignored(job: str, key: str, which: str) -> Change:
    return Change(job, key, "noisy", f"{which} latency was timed on a busy machine (flagged "
                  "noisy) and is within the noisy threshold: not compared", False)


def _threshold(cfg: NightlyConfig, noisy: bool) -> float:
    return max(cfg.noisy_latency_threshold, cfg.latency_threshold) if noisy \
        else cfg.latency_threshold


def _despite(noisy: bool) -> str:
    return (", timed on a busy machine but beyond the noisy threshold" if noisy else "")


def _as_record(it: dict) -> CandidateRecord:
    """A night's item snapshot as a record (for the front and best-point rules)."""
    return CandidateRecord(
        model_name="", model_hash=it["model_hash"] or "", target="", backend=it["kind"],
        prune_ratio=0.0, quant="", schedule=it["key"], trials=0, status=it["status"] or "failed",
        latency_median_ms=it["latency_median_ms"], latency_p90_ms=it["latency_p90_ms"],
        ap=it["ap"], model_size_bytes=it["model_size_bytes"],
        peak_memory_mb=it.get("peak_memory_mb"), id=it["id"])


def _points(items: list[dict], job: str) -> list[dict]:
    return [i for i in items if i["job"] == job and i["kind"] in ("point", "baseline")
            and i["state"] == "done"]


def _best(items: list[dict], job: JobConfig) -> tuple[dict | None, str]:
    recs = [_as_record(i) for i in items if i["kind"] == "point"]
    try:
        best = best_under(recs, job.constraint("max_latency_ms"), job.constraint("min_ap"),
                          job.constraint("max_size_mb"), job.constraint("max_memory_mb"))
    except NoCandidate as exc:
        return None, str(exc)
    return next(i for i in items if i["id"] == best.id), ""


def _front_keys(items: list[dict]) -> set[tuple[str, str]]:
    ids = {r.id for r in pareto_front([_as_record(i) for i in items])}
    return {(i["kind"], i["key"]) for i in items if i["id"] in ids}


def job_changes(job: JobConfig, cur: list[dict], prev: list[dict],
                cfg: NightlyConfig) -> list[Change]:
    """Front and best-point changes of one job (per-point ones: :func:`compare_items`)."""
    out = []
    c, p = _points(cur, job.name), _points(prev, job.name)
    if not p:
        return out
    for kind, key in sorted(_front_keys(c) - _front_keys(p)):
        out.append(Change(job.name, key, "front", f"new on the Pareto front ({kind})", False))
    (bc, _), (bp, _) = _best(c, job), _best(p, job)
    if bp is not None and bc is None:
        out.append(Change(job.name, bp["key"], "best", "no point meets the constraints any more "
                          f"(last night: {bp['key']}, {bp['latency_median_ms']:.3f} ms)", True))
    elif bp is not None and bc is not None:
        worse = _best_worse(bc, bp, job, cfg)
        if worse or bc["key"] != bp["key"]:
            out.append(Change(job.name, bc["key"], "best",
                              f"best point under the constraints {worse or 'changed'}: "
                              f"{bp['key']} ({_f(bp['latency_median_ms'])} ms, AP "
                              f"{_f(bp['ap'])}) -> {bc['key']} ({_f(bc['latency_median_ms'])} ms, "
                              f"AP {_f(bc['ap'])})", bool(worse)))
    return out


def _best_worse(now: dict, before: dict, job: JobConfig, cfg: NightlyConfig) -> str | None:
    """How tonight's best point is worse than last night's, by the rule that picked it
    (:func:`pose_tuner.store.pareto.best_under`): under a latency cap the most accurate wins, so a
    lower AP is worse and a higher one better whatever the latency; otherwise the
    fastest wins."""
    if job.constraint("max_latency_ms") is not None and now["ap"] is not None \
            and before["ap"] is not None:
        if now["ap"] < before["ap"] - cfg.ap_threshold:
            return "is less accurate"
        if now["ap"] > before["ap"] + cfg.ap_threshold:
            return None
    if _slower(now["latency_median_ms"], before["latency_median_ms"],
               before["latency_p90_ms"], cfg.latency_threshold):
        return "is slower"
    return None


# -- rendering -----------------------------------------------------------------------
@dataclass
class _Doc:
    """A tiny document model rendered to both Markdown and HTML."""

    blocks: list = field(default_factory=list)

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def ul(self, lines: list[str]):
        if lines:
            self.blocks.append(("ul", lines))

    def table(self, head: list[str], rows: list[list[str]]):
        self.blocks.append(("table", head, rows))

    def img(self, path: str, alt: str):
        self.blocks.append(("img", path, alt))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]))
            elif b[0] == "table":
                head, rows = b[1], b[2]
                esc = [[c.replace("|", "\\|") for c in r] for r in rows]
                out.append("\n".join(["| " + " | ".join(head) + " |",
                                      "|" + "---|" * len(head)]
                                     + ["| " + " | ".join(r) + " |" for r in esc]))
            elif b[0] == "img":
                out.append(f"![{b[2]}]({os.path.basename(b[1])})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
               "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
               "padding:3px 6px;text-align:left}.reg{color:#b00;font-weight:bold}</style>"
               "</head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>"
                           + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r)
                                     + "</tr>" for r in b[2]) + "</table>")
            elif b[0] == "img":
                with open(b[1], "rb") as f:
                    data = base64.b64encode(f.read()).decode()
                out.append(f"<p><img alt='{e(b[2])}' src='data:image/png;base64,{data}' "
                           "style='max-width:100%'></p>")
        out.append("</body></html>")
        return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code` the way Markdown would."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b class='reg'>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _f(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_report(cfg: NightlyConfig, db, queue: WorkQueue, run: Run) -> Report:
    cur = queue.items(run.id)
    prev_run = queue.previous_run(run)
    prev = queue.items(prev_run.id) if prev_run else []
    out_dir = os.path.join(cfg.reports_dir, _slug(cfg.name), _slug(run.night))
    os.makedirs(out_dir, exist_ok=True)
    changes = compare_items(cur, prev, cfg)
    for job in cfg.jobs:
        changes += job_changes(job, cur, prev, cfg)
    regressions = [c for c in changes if c.regression]
    failed = [i for i in cur if i["state"] == "done" and i["status"] not in ("ok", "skipped")]
    skipped = [i for i in cur if i["state"] == "skipped"]

    doc = _Doc()
    title = f"Nightly report: {cfg.name}, night {run.night}"
    doc.h(1, title)
    workers = sorted({i["worker"] for i in cur if i["worker"]})
    doc.p(f"Run {run.id}, started {run.started_at}; pose-tuner {run.tuner_version}, "
          f"TVM {run.tvm_version}; workers: {', '.join(workers) or '-'}.")
    doc.p(f"Compared with night {prev_run.night} (run {prev_run.id})." if prev_run else
          "First night of this configuration: nothing to compare with.")
    doc.p(f"**{len(regressions)} regression(s)**" if regressions else "No regression.")
    counts: dict[str, int] = {}
    for i in cur:
        k = i["outcome"] or i["state"]
        counts[k] = counts.get(k, 0) + 1
    doc.p("Items: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ".")

    for job in cfg.jobs:
        items = [i for i in cur if i["job"] == job.name]
        doc.h(2, job.name)
        recs = [db.get(i["candidate_id"]) for i in _points(cur, job.name) if i["candidate_id"]]
        recs = [r for r in recs if r is not None]
        front = pareto_front(recs)
        png = os.path.join(out_dir, f"front-{_slug(job.name)}.png")
        try:
            from pose_tuner.store.plot import plot_front

            plot_front(recs, front, png, title=f"{job.name}, night {run.night}")
            doc.img(png, f"Pareto front of {job.name}")
        except ValueError:
            doc.p("No plot: no point of this job has an AP (accuracy is off, or every "
                  "evaluation failed).")
        best, why = _best(_points(cur, job.name), job)
        cons = ", ".join(f"{k} {v:g}" for k, v in job.constraints) or "none"
        if best is not None:
            doc.p(f"Best TVM point under the constraints ({cons}): `{best['key']}`, "
                  f"{_f(best['latency_median_ms'])} ms, AP {_f(best['ap'])}, candidate "
                  f"{best['candidate_id']} (`tuner export {best['candidate_id']} --out DIR`).")
        else:
            doc.p(f"Best TVM point under the constraints ({cons}): none ({why}).")
        doc.h(3, "Changes since the previous night")
        job_ch = [c for c in changes if c.job == job.name]
        doc.ul([("**REGRESSION** " if c.regression else "") + f"{c.what} `{c.key}`: {c.message}"
                for c in job_ch] or ["none" if prev_run else "no previous night"])
        doc.h(3, "Tonight's points")
        before = {(i["kind"], i["key"]): i for i in prev if i["job"] == job.name}
        front_ids = {r.id for r in front}
        rows = []
        for i in items:
            old = before.get((i["kind"], i["key"]))
            was = old["latency_median_ms"] if old and old["status"] == "ok" else None
            if i["kind"] == "remeasure":  # against the stored figure it re-times
                was = json.loads(i["payload"]).get("stored_median_ms")
            now = i["latency_median_ms"]
            rows.append([i["kind"], i["key"], i["outcome"] or i["state"], i["status"] or "-",
                         _f(now) + ("!" if i.get("latency_noisy") else ""),
                         _f(i["latency_p90_ms"]), _f(1000.0 / now if now else None, ".1f"),
                         _f(i["ap"]),
                         _f(i["model_size_bytes"] / 1e6 if i["model_size_bytes"] else None, ".2f"),
                         _f(i.get("peak_memory_mb"), ".1f"),
                         _f(was), _pct(now, was) if now and was else "-",
                         "*" if i["candidate_id"] in front_ids and i["kind"] != "remeasure" else "",
                         str(i["candidate_id"] or "-")])
        doc.table(["kind", "point", "outcome", "status", "median ms", "p90 ms", "FPS", "AP",
                   "size MB", "mem MB", "before ms", "change", "front", "id"], rows)
        doc.p("*before ms*: last night's median of the point; for a re-measurement, the stored "
              "median it re-times. *mem MB*: peak resident memory of running the artifact. "
              "A median marked ! was timed on a busy machine (flagged noisy, not compared).")
        bad = [i for i in failed + skipped if i["job"] == job.name]
        if bad:
            doc.h(3, "Failed and skipped")
            doc.ul([f"{i['kind']} `{i['key']}` ({i['status'] or i['state']}): {i['error']}"
                    for i in bad])
        doc.h(3, "Versions")
        vers = sorted({(i["tuner_version"] or "-", i["tvm_version"] or "-", i["target_config"] or "-",
                        i["device"] or "-") for i in items if i["state"] == "done"})
        doc.table(["pose-tuner", "TVM", "target config", "device"], [list(v) for v in vers])
        old_vers = {(i["tvm_version"], i["device"], i["target_config"])
                    for i in prev if i["job"] == job.name and i["state"] == "done"}
        new_vers = {(i["tvm_version"], i["device"], i["target_config"])
                    for i in items if i["state"] == "done"}
        if prev_run and old_vers and new_vers - old_vers:
            doc.p("Versions or devices changed since the previous night: regressions above may "
                  "come from that.")

    md_path = os.path.join(out_dir, "report.md")
    html_path = os.path.join(out_dir, "report.html")
    for path, text in ((md_path, doc.markdown()), (html_path, doc.html(title))):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    lines = [f"night {run.night} of {cfg.name} finished: {len(regressions)} regression(s); "
             f"report: {html_path} (and report.md)"]
    lines += [f"  REGRESSION {c.job} {c.what} {c.key}: {c.message}" for c in regressions]
    return Report(html_path, md_path, tuple(regressions), tuple(changes), "\n".join(lines))

