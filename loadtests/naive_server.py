"""The benchmark's naive baseline: one transformers forward per request, plain uvicorn.

Same model, same request and response shape as the service, no batching, no limits, no log.
Run: MODEL_DIR=models/candidate python -m loadtests.naive_server --port 3001
"""

from __future__ import annotations

import argparse
import os

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from service.inference import classify, load_model

MODEL = load_model(os.environ.get("MODEL_DIR", "models/candidate"))


async def classify_endpoint(request: Request) -> JSONResponse:
    texts = (await request.json())["texts"]
    predictions = await run_in_threadpool(classify, MODEL, texts)
    return JSONResponse({"model_version": MODEL.version, "predictions": predictions},
                        headers={"X-Model-Version": MODEL.version})


async def readyz(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/classify", classify_endpoint, methods=["POST"]),
                        Route("/readyz", readyz)])

if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3001)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
