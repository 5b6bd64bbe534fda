"""Screenshot of the review UI for the docs: a real model's predictions on holdout texts, logged
through the prediction log, reviewed from the keyboard in headless Chromium.

    python -m service.review.screenshot docs/img/review-ui.png [--model DIR] [--shadow-model DIR]
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import threading
import time
import uuid
from pathlib import Path

from pipelines.runtime.classifier import load_classifier, predict
from pipelines.runtime.metadata import is_model_dir
from service.predlog import PredictionLog, prediction_rows
from service.review.browser import chromium_page, log_in
from service.review.settings import ReviewSettings


def log_model_predictions(db_url: str, model_dir: Path, shadow_dir: Path | None,
                          texts: list[str], per_request: int = 4) -> None:
    """Classify texts in small requests and log them the way the service does."""
    model = load_classifier(model_dir)
    shadow = load_classifier(shadow_dir) if shadow_dir else None
    log = PredictionLog(db_url).start()
    for start in range(0, len(texts), per_request):
        batch = texts[start:start + per_request]
        began = time.perf_counter()
        predictions = [{**p, "model_version": model.version} for p in predict(model, batch)]
        latency = (time.perf_counter() - began) * 1000
        request_id = uuid.uuid4().hex
        log.record(prediction_rows(request_id, batch, predictions, latency, "text"))
        if shadow is not None:
            log.record_shadow(request_id, [p["label"] for p in predict(shadow, batch)],
                              shadow.version)
    log.close()


def serve_in_thread(settings: ReviewSettings, port: int):
    import uvicorn

    from service.review.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    return server, thread


def take_screenshot(out: Path, model_dir: Path, shadow_dir: Path | None, texts_file: Path,
                    n: int, port: int) -> None:
    import pandas as pd

    # the split format of pipelines/core/data.py, which the service may not import
    split = pd.read_csv(texts_file, dtype=str, keep_default_na=False, encoding="utf-8")
    texts = split.text.sample(n, random_state=7).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/predictions.db"
        log_model_predictions(db_url, model_dir, shadow_dir, texts)
        token = secrets.token_hex(8)
        settings = ReviewSettings(token=token, db_url=db_url,
                                  labels=list(load_classifier(model_dir).labels), page_size=12,
                                  host="127.0.0.1", port=port)
        server, thread = serve_in_thread(settings, port)
        try:
            from playwright.sync_api import expect

            with chromium_page(1400, 820) as page:
                log_in(page, f"http://127.0.0.1:{port}", token, "alice")
                for key in ("1", "a", "2", "j"):  # fix, confirm, fix, skip
                    before = page.locator("#count-reviewed").inner_text()
                    page.keyboard.press(key)
                    if key != "j":
                        # a locator wait, not wait_for_function: the CSP forbids eval
                        expect(page.locator("#count-reviewed")).not_to_have_text(before)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
        finally:
            server.should_exit = True
            thread.join(10)
    print(f"review UI screenshot: {out} ({n} predictions of {model_dir})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, default=Path("models/candidate"))
    parser.add_argument("--shadow-model", type=Path, default=Path("models/baseline"))
    parser.add_argument("--texts", type=Path, default=Path("data/holdout.csv"))
    parser.add_argument("-n", type=int, default=40)
    parser.add_argument("--port", type=int, default=3091)
    args = parser.parse_args()
    if not is_model_dir(args.model):
        parser.error(f"{args.model}: no trained model there; run `make repro` first "
                     "or pass --model DIR")
    if not args.texts.is_file():
        parser.error(f"{args.texts}: no such split; run `make data` first or pass --texts FILE")
    shadow = args.shadow_model if is_model_dir(args.shadow_model) else None
    take_screenshot(args.out, args.model, shadow, args.texts, args.n, args.port)


if __name__ == "__main__":
    main()
