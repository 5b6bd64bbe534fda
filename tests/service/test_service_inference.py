"""The one inference function, settings overrides, and the CPU speed-ups' accuracy guard."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.analysis.behaviour import EVASIONS
from pipelines.analysis.metrics import macro_f1
from pipelines.analysis.scoring import load_holdout
from pipelines.runtime.cpu import cpu_flags
from pipelines.runtime.metadata import ModelMetadata
from pipelines.runtime.params import ParamsError, load_params
from service.inference import choose_accel, classify, load_model, resolve_accel
from service.onnx_runtime import fast_tokenizer, prepare_onnx
from service.settings import load_settings
from service.validation import InputError, parse_classify_body

F1_TOLERANCE = 0.005  # a speed-up is accepted only within this much holdout macro-F1 of fp32


def holdout_macro_f1(clf, root) -> tuple[float, np.ndarray]:
    params = load_params(root / "params.yaml")
    frame, y_true = load_holdout(params.data)
    frame["text"] = frame["text"].astype(str)
    proba = clf.predict_proba(list(frame.text))
    return macro_f1(y_true, proba.argmax(axis=1), len(clf.labels)), proba


@pytest.fixture(scope="module")
def fp32(smoke_repo, monkeypatch_module):
    monkeypatch_module.chdir(smoke_repo)
    clf = load_model(smoke_repo / "models/candidate")
    return holdout_macro_f1(clf, smoke_repo)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.parametrize("accel", ["bf16", "int8", "onnx", "onnx-int8", "auto"])
def test_speed_up_keeps_holdout_macro_f1_within_tolerance_of_fp32(smoke_repo, fp32, accel,
                                                                  tmp_path, monkeypatch):
    monkeypatch.setenv("MODERATION_ONNX_CACHE", str(tmp_path))
    f1_fp32, proba_fp32 = fp32
    f1, proba = holdout_macro_f1(load_model(smoke_repo / "models/candidate", accel), smoke_repo)
    assert abs(f1 - f1_fp32) <= F1_TOLERANCE
    assert np.abs(proba - proba_fp32).max() < 0.05, "scores drifted too far from fp32"


@pytest.mark.parametrize(("flags", "chosen"), [
    ({"avx512f", "amx_bf16", "amx_int8", "avx512_vnni", "avx512_bf16"}, "bf16"),
    ({"avx512f", "avx512_vnni", "avx512_bf16"}, "int8"),
    ({"avx2", "avx_vnni"}, "int8"),
    ({"avx512f", "avx512_bf16"}, "bf16"),
    ({"avx2", "fma"}, "none"),
    (set(), "none"),
])
def test_auto_accel_picks_the_fastest_path_the_cpu_flags_support(flags, chosen):
    assert choose_accel(flags)[0] == chosen


@pytest.fixture(scope="module")
def prepared_model(smoke_repo, tmp_path_factory) -> Path:
    """The smoke candidate with the ONNX graph `make bento` prepares inside the Bento's copy."""
    model_dir = Path(shutil.copytree(smoke_repo / "models/candidate",
                                     tmp_path_factory.mktemp("prepared") / "model"))
    prepare_onnx(model_dir, ModelMetadata.load(model_dir))
    return model_dir


def test_prepared_int8_graph_scores_like_fp32_within_tolerance(smoke_repo, fp32, prepared_model,
                                                                tmp_path, monkeypatch):
    monkeypatch.setenv("MODERATION_ONNX_CACHE", str(tmp_path))  # must stay unused
    f1_fp32, proba_fp32 = fp32
    f1, proba = holdout_macro_f1(load_model(prepared_model, "onnx-int8"), smoke_repo)
    assert abs(f1 - f1_fp32) <= F1_TOLERANCE
    assert np.abs(proba - proba_fp32).max() < 0.05
    assert not any(tmp_path.iterdir()), "a prepared graph was exported again"


def test_the_onnx_path_reads_the_model_metadata_once(prepared_model, tmp_path, monkeypatch):
    monkeypatch.setenv("MODERATION_ONNX_CACHE", str(tmp_path))
    read = ModelMetadata.load.__func__
    calls = []

    def counted(cls, model_dir):
        calls.append(model_dir)
        return read(cls, model_dir)

    monkeypatch.setattr(ModelMetadata, "load", classmethod(counted))
    assert load_model(prepared_model, "onnx-int8").predict_proba(["hello"]).shape == (1, 2)
    assert len(calls) == 1, calls


def test_auto_runs_int8_in_onnx_runtime_where_the_graph_is_prepared(prepared_model, smoke_repo,
                                                                      caplog):
    vnni = {"avx512f", "avx512_vnni"}
    with caplog.at_level("INFO", logger="service.inference"):
        assert resolve_accel("auto", vnni, prepared_model) == "onnx-int8"
    assert "prepared ONNX INT8 graph" in caplog.text
    assert resolve_accel("auto", vnni, smoke_repo / "models/candidate") == "int8"
    assert resolve_accel("auto", {"amx_bf16", *vnni}, prepared_model) == "bf16"


@pytest.mark.parametrize("path", ["baseline", "torch", "onnx-int8"])
def test_every_inference_path_scores_a_disguised_text_as_the_plain_one(smoke_repo, prepared_model,
                                                                       path):
    """The canonicaliser runs inside the classifiers, so the service's paths all apply it."""
    clf = {"baseline": lambda: load_model(smoke_repo / "models/baseline"),
           "torch": lambda: load_model(smoke_repo / "models/candidate"),
           "onnx-int8": lambda: load_model(prepared_model, "onnx-int8")}[path]()
    plain = "you are a stupid idiot"
    expected = classify(clf, [plain])[0]["scores"]
    for name, disguise in EVASIONS.items():
        assert classify(clf, [disguise(plain)])[0]["scores"] == expected, name


def test_prepared_onnx_path_starts_without_torch_or_transformers(prepared_model):
    """What makes the Bento's cold start short: nothing on this path imports either."""
    probe = ("import sys; from service.inference import load_model; "
             f"clf = load_model({str(prepared_model)!r}, 'onnx-int8', 1); "
             "print(clf.predict_proba(['you idiot', 'hello']).shape, "
             "sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip().splitlines()[-1] == "(2, 2) []"


def test_fast_tokenizer_encodes_exactly_as_the_transformers_tokenizer(smoke_repo):
    from transformers import AutoTokenizer

    model_dir = smoke_repo / "models/candidate"
    texts = ["", "hello", "@user you are a MORON!!! #idiot http://x.co", "x " * 300,
             "emoji 😀🔥 and accents: café naïve", "日本語のテキスト"]
    expected = AutoTokenizer.from_pretrained(model_dir)(texts, truncation=True, padding=True,
                                                        max_length=32)
    encodings = fast_tokenizer(model_dir, 32).encode_batch(texts)
    assert [e.ids for e in encodings] == expected["input_ids"]
    assert [e.attention_mask for e in encodings] == expected["attention_mask"]
    assert [e.type_ids for e in encodings] == expected["token_type_ids"]


def test_auto_accel_logs_what_it_chose_and_why(caplog):
    with caplog.at_level("INFO", logger="service.inference"):
        assert resolve_accel("auto", {"avx2"}) == "none"
    assert "accel auto" in caplog.text and "fp32" in caplog.text


def test_cpu_flags_are_read_from_cpuinfo_and_empty_without_it(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_vnni amx_bf16\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx512_vnni", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_classify_gives_label_scores_and_version_for_each_text(smoke_repo):
    clf = load_model(smoke_repo / "models/baseline")
    out = classify(clf, ["you absolute idiot", "have a nice day"])
    assert [set(p) for p in out] == [{"label", "scores", "model_version"}] * 2
    assert all(p["model_version"] == clf.version for p in out)
    assert all(p["label"] == max(p["scores"], key=p["scores"].get) for p in out)


def test_unknown_accel_is_rejected_with_the_choices(smoke_repo):
    with pytest.raises(ValueError, match="int8"):
        load_model(smoke_repo / "models/candidate", "fp4")


def test_environment_overrides_params_yaml(tmp_path):
    settings = load_settings(environ={"MODERATION_MAX_TEXTS": "3", "MODERATION_LOG_TEXT": "hash",
                                      "MODERATION_DB_URL": "postgresql://u@h:5432/db"})
    assert (settings.max_texts, settings.log_text, settings.db_url) == \
        (3, "hash", "postgresql://u@h:5432/db")
    assert load_settings(environ={}).max_texts == 64


def test_bad_environment_value_names_the_setting():
    with pytest.raises(ParamsError, match="max_concurrency"):
        load_settings(environ={"MODERATION_MAX_CONCURRENCY": "lots"})


@pytest.mark.parametrize(("body", "kind"), [
    (b'["a"]', "missing_field"), (b'{"texts": {"a": 1}}', "wrong_type"),
    (b'{"texts": ["a", null]}', "wrong_type"), (b"\xc3\x28", "invalid_utf8"),
    (b"", "invalid_json"),
])
def test_parser_names_each_malformed_body(body, kind):
    with pytest.raises(InputError) as err:
        parse_classify_body(body, max_chars=10, max_texts=2)
    assert err.value.kind == kind and 400 <= err.value.status < 500
