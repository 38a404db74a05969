import pytest

from ser_bench.config import RunConfig
from ser_bench.errors import ConfigError
from ser_bench.interfaces import Utterance
from ser_bench.protocols import enumerate_cells, make_folds


def utts(speakers=3, per=2, partitions=None):
    out = []
    for s in range(speakers):
        for i in range(per):
            out.append(Utterance(id=f"{s}-{i}", speaker=f"s{s}", label="a" if i % 2 else "b",
                                 partition=(partitions[s] if partitions else None), loader=lambda: None))
    return out


def count(protocol, **kw):
    cfg = RunConfig(protocol=protocol, datasets=["d"], ser_models=["m"], **kw)
    folds = {"d": make_folds(utts(), "loso", "d", False)}
    return enumerate_cells(cfg, folds)


@pytest.mark.parametrize("protocol,enh,snrs,expected_per_fold", [
    ("clean", ["none"], [0.0], 1),
    ("mismatched", ["none", "wiener"], [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0], 1 + 6 * 2),
    ("mismatched", ["none"], [0.0, 10.0], 1 + 2),
    ("matched", ["none", "a", "b"], [0.0, 10.0], 1 + 2 * 3),
    ("multi-snr", ["none", "wiener"], [5.0, 10.0, 15.0], 1 + 9 * 2),
])
def test_cell_counts(protocol, enh, snrs, expected_per_fold):
    cells = count(protocol, enhancers=enh, snrs=snrs)
    assert len(cells) == 3 * expected_per_fold  # 3 LOSO folds
    assert len({(c.enhancer, c.train, c.test, c.fold) for c in cells}) == len(cells)


def test_protocol_semantics():
    m = count("mismatched", enhancers=["none", "w"], snrs=[5.0])
    assert {(c.train.kind, c.test.kind) for c in m} == {("clean", "clean"), ("clean", "noisy"), ("clean", "enhanced")}
    mt = count("matched", enhancers=["none", "w"], snrs=[5.0])
    assert {(c.train.kind, c.train.snr, c.test.kind, c.test.snr) for c in mt} == {
        ("clean", None, "clean", None), ("noisy", 5.0, "noisy", 5.0), ("enhanced", 5.0, "enhanced", 5.0)}
    ms = count("multi-snr", enhancers=["none"], snrs=[5.0], train_snrs=[5.0, 15.0], test_snrs=[10.0])
    assert {(c.train.snr, c.test.snr) for c in ms if c.test.kind == "noisy"} == {(5.0, 10.0), (15.0, 10.0)}
    assert all(c.enhancer == "w" for c in mt if "enhanced" in (c.train.kind, c.test.kind))


def test_loso_and_partition_folds():
    folds = make_folds(utts(), "loso", "d", False)
    assert [f.name for f in folds] == ["spk:s0", "spk:s1", "spk:s2"]
    for f in folds:
        assert not set(f.train) & set(f.test)
    pf = make_folds(utts(partitions=["train", "dev", "test"]), "auto", "d", True)
    assert len(pf) == 1 and pf[0].valid and pf[0].test and pf[0].note == ""
    nodev = make_folds(utts(partitions=["train", "dev", "dev"]), "partition", "d", True)
    assert "dev partition serves as test" in nodev[0].note
    assert nodev[0].valid == () and not set(nodev[0].test) & set(nodev[0].train)  # test never steers fitting
    with pytest.raises(ConfigError, match=r"has 1 speaker\(s\).*\(--cv loso\) need at least 2"):
        make_folds(utts(speakers=1), "loso", "d", False)


def test_invalid_configs_are_clear():
    from ser_bench.config import make_config

    with pytest.raises(ConfigError, match="snrs"):
        make_config({"protocol": "matched", "snrs": [100]})
    with pytest.raises(ConfigError, match="protocol"):
        make_config({"protocol": "nope"})
    with pytest.raises(ConfigError, match="bogus"):
        make_config({"protocol": "matched", "bogus": 1})


def test_group_kfold_keeps_speakers_whole_and_balances_emotions():
    # 6 speakers with one emotion each (LOSO would test one emotion per fold)
    us = [Utterance(id=f"{s}-{i}", speaker=f"s{s}", label="ab"[s % 2], loader=lambda: None)
          for s in range(6) for i in range(3)]
    folds = make_folds(us, "group-kfold", "d", False, k=3)
    assert [f.name for f in folds] == ["group1of3", "group2of3", "group3of3"]
    by_id = {u.id: u for u in us}
    assert sorted(i for f in folds for i in f.test) == sorted(by_id)  # every utterance tested once
    for f in folds:
        test_spk = {by_id[i].speaker for i in f.test}
        assert not test_spk & {by_id[i].speaker for i in f.train}  # a speaker is never on both sides
        assert {by_id[i].label for i in f.test} == {"a", "b"}  # both emotions in every test fold
        assert f.note == "test speakers: " + ", ".join(sorted(test_spk))
    assert make_folds(us[::-1], "group-kfold", "d", False, k=3) == folds  # input order does not matter
    with pytest.raises(ConfigError, match="has 6 speaker.*group-kfold with 7 folds.*--cv-folds"):
        make_folds(us, "group-kfold", "d", False, k=7)


def test_cv_folds_is_hashed_only_for_group_kfold():
    base = RunConfig(protocol="clean")
    assert RunConfig(protocol="clean", cv_folds=3).config_hash() == base.config_hash()  # old hashes stay
    g3 = RunConfig(protocol="clean", cv="group-kfold", cv_folds=3)
    assert g3.config_hash() != RunConfig(protocol="clean", cv="group-kfold", cv_folds=4).config_hash()
