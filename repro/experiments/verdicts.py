"""The verdict engine: registered claims, locks, families, multiplicity and re-verification.

From committed files alone (``results/NAME/SCALE/``: ``summary.csv`` with one row per run,
``curves.csv`` when the per-step curves were committed, ``lock.json``) it

1. rebuilds the runs (``results_from_folder``) and evaluates every claim of the experiment
   with the test of its type under the experiment's registered seed design (fixed-n t or the
   group-sequential design of ``repro.experiments.sequential``);
2. compares each claim's canonical form with the lock: a claim not in the lock, or different
   from it, is *exploratory* (estimate and interval, no verdict, out of the totals);
3. across all experiments of a scale (``adjust_scale``): the positive control is the gate (if its
   verdict is not "reproduced", every other verdict at the scale reads "not interpretable at
   this scale"); confirmatory claims are adjusted together by Benjamini-Hochberg (scipy's
   ``false_discovery_control``) and marked where they also survive Holm; checks are
   Holm-adjusted among themselves;
4. writes ``claims.json`` and ``claims.md`` (rendered from claims.json alone), and ``repro verify``
   recomputes all of it and fails on any difference.

Method write-up: docs/verdicts.md.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from repro.errors import UserError
from repro.experiments import stats as S
from repro.experiments.claims import (
    ALPHA,
    CHECK,
    CONFIRMATORY,
    EXPLORATORY,
    GATE,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PENDING,
    REPRODUCED,
    ClaimResult,
    Results,
    RunRecord,
    mean_std,
)
from repro.experiments.sequential import Design
from repro.tracking import names as N

RULE_ID = "v2-registered"  # claims.json marker of this engine
LOCK = "lock.json"
SUMMARY = "summary.csv"
CURVES = "curves.csv"
LEGACY_SCALES = ("cpu-v1",)  # checked under the old ±1 sd rule, before locks: not re-judged
LOCK_STATUS_AFTER = "locked after runs; confirmatory on the next retrain"
# the machine columns of summary.csv (repro.machine.run_machine; the run's tags)
MACHINE_COLS = ("cpu_model", "cpu_capability", "torch", "threads")

NOT_INTERPRETABLE = "not interpretable at this scale"
EXPLORATORY_VERDICT = "exploratory (no verdict)"

L_LOCKED = "locked"
L_NOT_IN_LOCK = "not in lock"
L_DIFFERS = "differs from lock"
L_NO_LOCK = "no lock"
L_EXPLORATORY = "registered exploratory"


class VerifyError(RuntimeError):
    """``repro verify`` found a committed figure that does not recompute."""


# ------------------------------------------------------------------------------- the design
def design_of(exp) -> Design:
    planned = len(exp.seeds)
    return Design(planned, exp.max_seeds or planned)


def canonical(claim, exp) -> dict:
    """The registered form of one claim: its spec plus the experiment, scale, seed design
    (planned / maximum seeds, kind, alpha, SESOI) and alpha."""
    return {"experiment": exp.name, "scale": exp.scale, "claim": claim.spec(),
            "design": design_of(exp).canonical(), "alpha": ALPHA}


def claim_hash(form: dict) -> str:
    text = json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def make_lock(exp, status: str, commit: str, today: str | None = None) -> dict:
    claims = {}
    for c in exp.claims:
        form = canonical(c, exp)
        claims[c.name] = {"sha256": claim_hash(form), "canonical": form}
    return {"experiment": exp.name, "scale": exp.scale, "version": exp.version,
            "locked_on": today or datetime.date.today().isoformat(), "locked_at_commit": commit,
            "status": status, "design": design_of(exp).canonical(), "claims": claims}


def read_lock(folder: Path) -> dict | None:
    path = folder / LOCK
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise VerifyError(f"{path}: not valid JSON ({e}); restore it from git") from None


def lock_problems(lock: dict, where: Path) -> list[str]:
    """A lock's own integrity: every entry's hash is the hash of its canonical form."""
    out = []
    for name, entry in lock.get("claims", {}).items():
        if claim_hash(entry["canonical"]) != entry["sha256"]:
            out.append(f"{where / LOCK}: claim {name!r}: sha256 does not match its canonical "
                       "form (edited by hand?)")
    return out


def lock_status(claim, exp, lock: dict | None) -> str:
    if claim.family == EXPLORATORY:
        return L_EXPLORATORY
    if lock is None:
        return L_NO_LOCK
    entry = lock.get("claims", {}).get(claim.name)
    if entry is None:
        return L_NOT_IN_LOCK
    return L_LOCKED if entry["sha256"] == claim_hash(canonical(claim, exp)) else L_DIFFERS


# ------------------------------------------------------------------ runs from committed files
def machine_label(row: dict) -> str | None:
    model = (row.get("cpu_model") or "").strip()
    if not model:
        return None
    cap = (row.get("cpu_capability") or "").strip()
    return f"{model} [{cap}]" if cap else model


def results_from_folder(folder: Path) -> Results:
    """The runs of one result folder from its summary.csv (final values, metrics, machine) and,
    when committed, curves.csv (per-step val loss and train drop fraction)."""
    path = folder / SUMMARY
    if not path.exists():
        raise VerifyError(f"{path}: missing; every verdict needs its per-seed values")
    rows = list(csv.DictReader(path.open()))
    skip = {"experiment", "scale", "arm", "seed", "run_id", "final_val_loss", *MACHINE_COLS}
    curves: dict[tuple[str, int], dict[str, list[tuple[int, float]]]] = {}
    cpath = folder / CURVES
    if cpath.exists():
        for r in csv.DictReader(cpath.open()):
            key = (r["arm"], int(r["seed"]))
            curves.setdefault(key, {}).setdefault(r["metric"], []).append(
                (int(r["step"]), float(r["value"])))
    runs = {}
    for r in rows:
        key = (r["arm"], int(r["seed"]))
        metrics = {k: float(v) for k, v in r.items() if k not in skip and v not in ("", None)}
        c = curves.get(key)
        val = sorted(c.get(N.M_VAL_LOSS, [])) if c else [(0, float(r["final_val_loss"]))]
        drops = sorted(c.get(N.M_DROP, [])) if c else []
        runs[key] = RunRecord(r["arm"], key[1], r["run_id"], val, metrics, None, None, None,
                              drops, curves=c is not None, machine=machine_label(r))
    return Results(runs)


# ------------------------------------------------------------------------ one experiment
def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))) \
        else float(x)


def claim_entry(exp, r: ClaimResult, lock: dict | None, results: Results) -> dict:
    """One claim of claims.json before the scale-wide adjustment."""
    c = r.claim
    design = design_of(exp)
    status = lock_status(c, exp, lock)
    family = c.family if status in (L_LOCKED, L_EXPLORATORY) else EXPLORATORY
    o = r.outcome
    n_used = r.n if o is not None else len(results.seeds(*c.arms)) if c.arms else 0
    e = {"name": c.name, "statement": c.statement, "paper": c.paper_figure, "source": c.source,
         "proxy": c.proxy, "registered_family": c.family, "family": family, "lock": status,
         "sha256": claim_hash(canonical(c, exp)), "test": c.test,
         "design": design.kind, "seeds": {"used": n_used, "planned": design.planned,
                                          "max": design.max_seeds},
         "cpu": results.machines(*c.arms), "rule": r.rule, "measured": r.measured,
         "own_verdict": r.verdict, "pending": r.pending}
    cross = results.cross_machine(*c.arms) if c.arms else []
    if cross:
        e["cross_machine_seeds"] = cross
    if o is None:
        e.update(estimate=None, ci=None, interval=S.CI_NONE, p=None)
    else:
        e.update(estimate=_num(o.estimate), sd=_num(o.sd), ci=[_num(o.lo), _num(o.hi)],
                 interval=o.interval, p_for=_num(o.p_for), p_against=_num(o.p_against),
                 p=_num(o.p), crossed=o.crossed, detail=o.detail,
                 effect=_num(r.decision.effect) if r.decision else None,
                 seeds_needed=r.decision.seeds_needed if r.decision else None,
                 per_seed={k: [_num(x) for x in v] for k, v in r.per_seed.items()})
    if r.budget is not None:
        b = r.budget
        e["budget"] = {"plus": b.plus, "minus": b.minus, "trend": b.trend,
                       "sign_since": b.crossover,
                       "at": {str(f): {"step": st, "mean": _num(iv.mean),
                                       "ci95": [_num(iv.lo), _num(iv.hi)]}
                              for f, (st, iv) in b.at.items()}}
    return e


def arms_table(exp, results: Results) -> list[dict]:
    out = []
    for a in exp.arms:
        seeds = results.seeds(a.name)
        m, s = mean_std([results.get(a.name, x).final_val_loss for x in seeds])
        tps, _ = mean_std([results.get(a.name, x).metrics.get(N.M_TOKENS_PER_S, math.nan)
                           for x in seeds])
        out.append({"arm": a.name, "description": a.description, "n": len(seeds),
                    "final_val_loss": _num(m), "sd": _num(s), "tokens_per_s": _num(tps)})
    return out


def judge(exp, results: Results, lock: dict | None, env: str, extra: dict | None = None
          ) -> dict:
    """claims.json of one experiment before the scale-wide adjustment."""
    design = design_of(exp)
    claim_results = [c.evaluate(results, design) for c in exp.claims]
    arms = [a.name for a in exp.arms]
    payload = {
        "experiment": exp.name, "version": exp.version, "title": exp.title, "scale": exp.scale,
        "paper": exp.paper, "env": env, "verdict_rule": RULE_ID,
        "control": bool(exp.extra.get("control")),
        "design": design.canonical(), "matched": exp.matched_description(),
        "seeds": {a: results.seeds(a) for a in arms},
        "machines": results.machines(),
        "curves_committed": results.has_curves,
        "missing": [list(m) for m in results.missing],
        "lock": ({k: lock.get(k) for k in ("locked_on", "locked_at_commit", "status")}
                 if lock else None),
        "arms": arms_table(exp, results),
        "claims": [claim_entry(exp, r, lock, results) for r in claim_results],
        "notes": list(results.notes),
        "experiment_notes": exp.notes,
        "studies": [],
    }
    if extra:
        payload.update(extra)
    return payload


# ----------------------------------------------------------------------- the whole scale
def adjust_scale(payloads: list[dict]) -> None:
    """Gate, BH over the confirmatory claims, Holm marks, Holm over the checks: sets each
    claim's ``p_adj``, ``holm``, ``verdict`` and ``verdict_if_gate_held`` in place. The
    payloads are one scale's claims.json files."""
    entries = [e for p in payloads for e in p["claims"]]
    gate = [e for p in payloads if p.get("control") for e in p["claims"]
            if e["family"] == GATE]

    def decided(e) -> bool:
        return e.get("p") is not None and not e.get("pending")

    conf = [e for e in entries if e["family"] == CONFIRMATORY and decided(e)]
    checks = [e for e in entries if e["family"] == CHECK and decided(e)]
    for group, method in ((conf, "BH"), (checks, "Holm")):
        ps = [e["p"] for e in group]
        adj = S.bh(ps) if method == "BH" else S.holm(ps)
        hol = S.holm(ps)
        for e, a, h in zip(group, adj, hol):
            e["adjustment"] = f"{method} over {len(group)} {e['family']} claims"
            e["p_adj"] = a
            e["holm"] = h
            e["survives_holm"] = h <= ALPHA
    for e in gate:
        if decided(e):
            e["adjustment"] = "none (the gate is tested first, alone)"
            e["p_adj"] = e["p"]
    gate_ok = bool(gate) and all(e["own_verdict"] == REPRODUCED for e in gate)
    if not gate:
        why = f"{NOT_INTERPRETABLE} (no positive control checked at this scale)"
    else:
        why = (f"{NOT_INTERPRETABLE} (positive control "
               f"{', '.join(e['name'] + ': ' + _bare(e) for e in gate)})")
    for e in entries:
        if e["family"] == EXPLORATORY:
            e["verdict"] = EXPLORATORY_VERDICT
            continue
        if e.get("pending"):
            e["verdict"] = f"{PENDING}: {e['pending']}"
            continue
        if e["family"] == GATE:
            e["verdict"] = e["own_verdict"]
            continue
        p_adj = e.get("p_adj")
        v = INCONCLUSIVE
        if p_adj is not None and p_adj <= ALPHA and e.get("crossed", True):
            v = REPRODUCED if e["p_for"] <= e["p_against"] else NOT_REPRODUCED
        e["verdict_if_gate_held"] = v
        e["verdict"] = v if gate_ok else why
    for p in payloads:
        p["gate"] = {"passed": gate_ok, "claims": [e["name"] for e in gate]}


def _bare(e) -> str:
    return e.get("own_verdict") or "-"


def totals(payloads: list[dict]) -> dict[str, dict[str, int]]:
    """Verdict counts per family over one scale (exploratory: count only)."""
    out: dict[str, dict[str, int]] = {}
    for p in payloads:
        for e in p["claims"]:
            v = e["verdict"].split(" (")[0].split(":")[0]
            out.setdefault(e["family"], {}).setdefault(v, 0)
            out[e["family"]][v] += 1
    return out


# --------------------------------------------------------------------------- claims.md
def _p(x) -> str:
    if x is None:
        return "-"
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"


def render_md(p: dict) -> str:
    """claims.md, from claims.json alone."""
    d = p["design"]
    lock = p.get("lock")
    lines = [f"# {p['experiment']}: {p['title']}", "", f"Paper: {p['paper']}", "",
             f"Run at {p['env']}.", "",
             f"Seeds per arm: {', '.join(f'{a} {len(s)}' for a, s in p['seeds'].items())}. "
             f"Matched: `{p['matched']}`.", "",
             f"Seed design: {d['kind']}, planned {d['planned']}, maximum {d['max_seeds']}, "
             f"alpha {d['alpha']} two-sided (0.025 per direction)"
             + (f", futility SESOI d = {d['sesoi_d']}" if d["max_seeds"] > d["planned"] else "")
             + ".", "",
             ("Lock: " + (f"{lock['status']} (locked on {lock['locked_on']} at commit "
                          f"{lock['locked_at_commit']})" if lock else "none: every claim is "
                          "exploratory")) + ".", "",
             f"CPU types of the runs: {', '.join(p['machines'])}.", ""]
    if p.get("missing"):
        lines += [f"**Partial**: {len(p['missing'])} (arm, seed) runs missing.", ""]
    gate = p.get("gate", {})
    if gate and not gate.get("passed"):
        lines += [f"**Gate**: the positive control at scale `{p['scale']}` is not reproduced "
                  "under its registered design, so the verdicts below read *not interpretable "
                  "at this scale*; the column *if the gate held* shows what each claim's "
                  "adjusted test says.", ""]
    lines += ["| claim | family | test | seeds used / planned / max | estimate and interval "
              "(type) | raw p | adjusted p | verdict | if the gate held | lock | CPU type |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in p["claims"]:
        s = e["seeds"]
        adj = "-"
        if e.get("p_adj") is not None:
            adj = f"{_p(e['p_adj'])} ({e['adjustment'].split(' over')[0]}"
            adj += ", survives Holm)" if e.get("survives_holm") else ")"
        stmt = e["statement"] + (f" *(proxy: {e['proxy']})*" if e.get("proxy") else "")
        lines.append(
            f"| **{e['name']}**: {stmt} | {e['family']} | {e['test']} | {s['used']} / "
            f"{s['planned']} / {s['max']} | {e['measured']} | {_p(e.get('p'))} | {adj} | "
            f"**{e['verdict']}** | {e.get('verdict_if_gate_held', '-')} | {e['lock']} | "
            f"{', '.join(e['cpu'])} |")
    lines += ["", "Paper figures:", ""]
    lines += [f"- **{e['name']}**: {e['paper']} ({e['source']}); rule: {e['rule']}"
              + (f"; {e['detail']}" if e.get("detail") else "") for e in p["claims"]]
    lines += ["", "Method: docs/verdicts.md (tests per claim type, the seed design, families "
              "and adjustment). Raw p: two-sided, from the claim's own test; adjusted p: "
              "across the scale's claims of the same family.", ""]
    gaps = [e for e in p["claims"] if e.get("budget")]
    if gaps:
        lines += ["## Loss gaps along the training budget (descriptive)", "",
                  "Paired val-loss gap (loser minus winner of the claim; > 0 means the claim "
                  "holds at that step), t 95% CI per step.", "",
                  "| claim | 25% | 50% | 100% | trend | sign since |", "|---|---|---|---|---|---|"]
        for e in gaps:
            b = e["budget"]
            cells = []
            for f in ("0.25", "0.5", "1.0"):
                a = b["at"].get(f)
                if a is None:
                    cells.append("-")
                    continue
                lo, hi = a["ci95"]
                ci = f" [{lo:+.4f}, {hi:+.4f}]" if lo is not None else ""
                cells.append(f"{a['mean']:+.4f}{ci} (step {a['step']})")
            lines.append(f"| {e['name']} | {' | '.join(cells)} | {b['trend']} | "
                         f"{b['sign_since'] if b['sign_since'] is not None else 'start'} |")
        if not p.get("curves_committed"):
            lines += ["", "These gaps were computed by `repro check` from the run store when "
                      "the runs were checked; the per-step curves were not committed then, so "
                      "`repro verify` cannot recompute them (they decide no verdict)."]
        lines.append("")
    lines += ["## Final validation loss per arm", "",
              "| arm | final val loss (mean ± sd) | seeds | tokens/s |", "|---|---|---|---|"]
    for a in p["arms"]:
        fv = a["final_val_loss"]
        sd = a["sd"]
        tps = a["tokens_per_s"]
        lines.append(f"| {a['arm']} | "
                     + (f"{fv:.4f} ± {sd:.4f}" if fv is not None and sd is not None else
                        f"{fv:.4f}" if fv is not None else "-")
                     + f" | {a['n']} | {f'{tps:.0f}' if tps is not None else '-'} |")
    if p.get("studies"):
        lines += ["", "## Studies (exploratory: figures, no verdict)", ""]
        lines += [f"- {s}" for s in p["studies"]]
    if p.get("experiment_notes"):
        lines += ["", "## Notes", "", p["experiment_notes"]]
    if p.get("notes"):
        lines += ["", "Runs found by tags rather than exact run key (the config serialization "
                  "changed after they ran):", ""] + [f"- {n}" for n in p["notes"]]
    return "\n".join(lines) + "\n"


def dumps(payload: dict) -> str:
    return json.dumps(payload, indent=1) + "\n"


# ------------------------------------------------------------------------------ folders
@dataclass
class Folder:
    path: Path
    experiment: str
    scale: str


class DamagedResultError(UserError, ValueError):
    """A claims.json that is not one `repro check` wrote (truncated, empty, not JSON, wrong
    shape); one line naming the file and the fix."""


_TEXT = ("experiment", "scale", "env")  # top-level text every claims.json has
_CLAIM_TEXT = ("statement", "paper", "source", "measured", "verdict")  # and each claim (a row)


def read_claims(path: Path) -> dict:
    """One claims.json, checked at the file-reading boundary: every reader of results/ goes
    through here, so a damaged file is one line naming it and the fix, never a KeyError."""
    from repro.paths import read_owned_bytes

    def bad(why: str) -> DamagedResultError:
        return DamagedResultError(f"{path} is {why}, not a claims file `repro check` wrote; "
                                  f"rerun `repro check {path.parent.parent.name} --scale "
                                  f"{path.parent.name}` to rewrite it, or restore it from git")

    try:
        d = json.loads(read_owned_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad("empty" if path.stat().st_size == 0 else
                  f"not valid JSON ({getattr(e, 'msg', e)} at line {getattr(e, 'lineno', '?')})"
                  ) from None
    if not isinstance(d, dict):
        raise bad(f"a JSON {type(d).__name__}, not an object")
    for k in _TEXT:
        if not isinstance(d.get(k), str):
            raise bad(f"missing its text field {k!r}")
    if not isinstance(d.get("seeds"), dict):
        raise bad("missing its 'seeds' (arm -> seeds)")
    if not isinstance(d.get("claims"), list):
        raise bad("missing its 'claims' list")
    for i, c in enumerate(d["claims"]):
        if not isinstance(c, dict) or not all(isinstance(c.get(k), str) for k in _CLAIM_TEXT):
            raise bad(f"wrong-shaped at claim {i} (needs text {', '.join(_CLAIM_TEXT)})")
    return d


def is_current(payload: dict) -> bool:
    """A claims.json written by this engine at a scale that is not legacy."""
    return payload.get("verdict_rule") == RULE_ID and payload.get("scale") not in LEGACY_SCALES


def _current(folders: list[Folder]) -> list[Folder]:
    out = []
    for f in folders:
        try:
            if is_current(read_claims(f.path / "claims.json")):
                out.append(f)
        except ValueError:
            out.append(f)  # a damaged file: verify reports it
    return out


def result_folders(root: Path, names: list[str] | None = None) -> list[Folder]:
    from repro.paths import swap_leftover

    out = []
    for f in sorted(root.glob("*/*/claims.json")):
        if swap_leftover(f.parent.name):
            continue
        exp, scale = f.parent.parent.name, f.parent.name
        if names and exp not in names:
            continue
        out.append(Folder(f.parent, exp, scale))
    return out


# values a re-judge takes from the committed claims.json (descriptive, made from the run store
# when the runs were checked; they decide no verdict)
CARRIED = ("env", "notes")
FIGURES = ("val_curves.png", "drop_curves.png")  # the arm-curve figures every check draws


def study_figures(folder: Path) -> list[str]:
    """Figures of the eval-time studies in a result folder (exploratory: no verdict)."""
    return [f"[{p.name}]({p.name})" for p in sorted(folder.glob("*.png"))
            if p.name not in FIGURES and not p.name.startswith("gap-")]


def rejudge_folder(folder: Folder, committed: dict) -> dict:
    """claims.json of one folder recomputed from its committed files (before adjustment)."""
    from repro.experiments.base import get_experiment

    exp = get_experiment(folder.experiment, folder.scale)
    results = results_from_folder(folder.path)
    results.missing = [tuple(m) for m in committed.get("missing") or []]
    payload = judge(exp, results, read_lock(folder.path), committed.get("env", ""),
                    {**{k: committed[k] for k in CARRIED if k in committed},
                     "studies": study_figures(folder.path)})
    # arm descriptions as the runs were trained (a later edit of the definition, e.g. an expert
    # width, does not rewrite what the committed runs were)
    old_arms = {a["arm"]: a.get("description") for a in committed.get("arms") or []}
    for a in payload["arms"]:
        if old_arms.get(a["arm"]):
            a["description"] = old_arms[a["arm"]]
    if not results.has_curves:  # gap tables from the store at check time: kept, marked
        old = {c["name"]: c.get("budget") for c in committed.get("claims", [])}
        for e in payload["claims"]:
            if old.get(e["name"]):
                e["budget"] = old[e["name"]]
    return payload


def rejudge_scale(root: Path, scale: str, committed: dict[Path, dict]) -> dict[Path, dict]:
    """Every folder of one scale recomputed and adjusted together."""
    folders = _current([f for f in result_folders(root) if f.scale == scale])
    fresh = {f.path: rejudge_folder(f, committed[f.path]) for f in folders}
    adjust_scale(list(fresh.values()))
    return fresh


def write_scale(root: Path, scale: str) -> list[Path]:
    """Re-judge every folder of ``scale`` from its committed files and rewrite claims.json and
    claims.md (used by `repro check` after it wrote its folder, and by `repro report`)."""
    from repro.paths import atomic_write_text

    folders = _current([f for f in result_folders(root) if f.scale == scale])
    committed = {f.path: read_claims(f.path / "claims.json") for f in folders}
    out = []
    for path, payload in rejudge_scale(root, scale, committed).items():
        atomic_write_text(path / "claims.json", dumps(payload))
        atomic_write_text(path / "claims.md", render_md(payload))
        out += [path / "claims.json", path / "claims.md"]
    return out


def scales(root: Path) -> list[str]:
    """Scales with results of this engine (smoke and legacy scales left out)."""
    return sorted({f.scale for f in _current(result_folders(root))} - {"smoke"})


# ------------------------------------------------------------------------------- verify
DESCRIPTIVE = ("studies",)  # links to figure files: listed, not verified


def _compare(a, b, where: str, out: list[str], tol: float = 1e-9) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted((set(a) | set(b)) - set(DESCRIPTIVE)):
            if k not in a or k not in b:
                what = "missing from the commit" if k not in b else "not recomputed"
                out.append(f"{where}.{k}: {what}")
                continue
            _compare(a[k], b[k], f"{where}.{k}", out, tol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(b)} committed items, {len(a)} recomputed")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _compare(x, y, f"{where}[{i}]", out, tol)
    elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        if not math.isclose(a, b, rel_tol=tol, abs_tol=1e-12):
            out.append(f"{where}: committed {b!r}, recomputed {a!r}")
    elif a != b:
        out.append(f"{where}: committed {b!r}, recomputed {a!r}")


def verify(root: Path, names: list[str] | None = None) -> tuple[list[str], int]:
    """Recompute every committed verdict, adjustment and lock hash under ``root`` (results/);
    returns (mismatches, claims checked). Legacy scales are skipped (named in the report)."""
    problems: list[str] = []
    checked = 0
    for scale in scales(root):
        folders = _current([f for f in result_folders(root) if f.scale == scale])
        committed = {}
        for f in folders:
            try:
                committed[f.path] = read_claims(f.path / "claims.json")
            except ValueError as e:
                problems.append(str(e))
        if len(committed) != len(folders):
            continue
        for f in folders:
            lock = read_lock(f.path)
            if lock is not None:
                problems += lock_problems(lock, f.path)
        try:
            fresh = rejudge_scale(root, scale, committed)
        except VerifyError as e:
            problems.append(str(e))
            continue
        for f in folders:
            if names and f.experiment not in names:
                continue
            new, old = fresh[f.path], committed[f.path]
            rel = f.path.relative_to(root)
            _compare(new, old, f"{rel}/claims.json", problems)
            md = (f.path / "claims.md").read_text() if (f.path / "claims.md").exists() else ""
            if md != render_md(old):
                problems.append(f"{rel}/claims.md: differs from what claims.json renders to")
            checked += len(new["claims"])
    return problems, checked
