"""Report test data shared by the report tests: a store with SER cells (2 folds, per-utterance
predictions) and quality cells for two enhancers, every name poisoned with markup."""
from __future__ import annotations


def poisoned_names(port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    return {
        "dataset": f'emo<img src="{url}/img.png" onerror="document.title=\'PWNED\'">',
        "enhancer": '<script>document.title="PWNED"</script>',
        "noise": f'"><svg onload="document.title=\'PWNED\'"><image href="{url}/svg.png"/></svg>',
        "ser_model": f"</script><script src=\"{url}/x.js\"></script><script>document.title='PWNED'</script>",
        "label": f'<iframe src="{url}/frame"></iframe>',
    }


def fill_store(store, names: dict[str, str]) -> None:
    """SER cells (2 folds, with per-utterance predictions) and quality cells for two enhancers."""
    import numpy as np

    run = store.start_run(config_json="{}", config_hash="browser", protocol="mismatched", name=names["dataset"],
                          code_version="test", plugins={}, env={}, seed=0, snr_definition="test", n_cells=0)
    ds, model, noise = names["dataset"], names["ser_model"], names["noise"]
    enhancers = [names["enhancer"], "wiener"]
    classes = ["angry", names["label"], "sad"]
    rng = np.random.default_rng(0)
    k = 0

    def ser(enh, cond, snr, fold, acc):
        nonlocal k
        k += 1
        truth = [classes[i % 3] for i in range(30)]
        pred = [t if rng.random() < acc else classes[(classes.index(t) + 1) % 3] for t in truth]
        ids = [f"{fold}-u{i}" for i in range(30)]
        uar = float(np.mean([np.mean([p == c for p, t in zip(pred, truth) if t == c]) for c in classes]))
        coords = dict(dataset=ds, ser_model=model, protocol="mismatched", enhancer=enh, noise=noise if snr is not None else "-",
                      train_condition="clean", train_snr=None, test_condition=cond, test_snr=snr, fold=fold)
        store.record_cell(run, f"ser{k}", coords, status="done", metrics={"uar": uar, "accuracy": uar},
                          predictions=[[i, t, p] for i, t, p in zip(ids, truth, pred)], n_test=30)

    for fold in ("spk:1", "spk:2"):
        ser("none", "clean", None, fold, 0.9)
        for snr in (0.0, 10.0, 20.0):
            ser("none", "noisy", snr, fold, 0.4 + snr / 50)
            for j, e in enumerate(enhancers):
                ser(e, "enhanced", snr, fold, 0.45 + snr / 50 + 0.1 * j)
    for snr in (0.0, 10.0, 20.0):
        for j, e in enumerate(["none", *enhancers]):
            k += 1
            vals = {"pesq": 1.2 + snr / 20 + 0.3 * j, "stoi": 0.6 + snr / 100 + 0.05 * j, "si_sdr": snr + 3 * j,
                    "snr": snr + 3 * j, "f0_rmse": 3.0 - snr / 10 - 0.4 * j, "f0_corr": 0.5 + snr / 50 + 0.05 * j,
                    "vuv_error": 0.3 - snr / 100, "loudness_corr": 0.7 + snr / 100, "hnr_rmse": 4 - snr / 10,
                    "alpha_corr": 0.6 + snr / 100, "egemaps_dist": 3 - snr / 10 - 0.5 * j * (j - 1)}
            if e != "none":
                vals.update(si_sdr_i=3.0 * j, snr_i=3.0 * j)
            detail = {"metrics": list(vals), "values": [[f"u{i}", *[v + 0.01 * i for v in vals.values()]] for i in range(5)],
                      "failures": [{"utt": names["label"], "metric": "pesq", "error": names["enhancer"]}]}
            coords = dict(dataset=ds, ser_model="-", protocol="quality", enhancer=e, noise=noise, train_condition="-",
                          train_snr=None, test_condition="noisy" if e == "none" else "enhanced", test_snr=snr, fold="all")
            store.record_cell(run, f"q{k}", coords, status="done", kind="quality",
                              metrics={**vals, "n_utts": 5.0, "failures": 1.0, "failed_pesq": 1.0}, predictions=detail)
    store.finish_run(run, "done", wall_s=1.0)
