"""Stage 4 samples its continuations as llama-server does with stage 5's flags, so the
style report reads text drawn the way the writer's editor draws it.

llama.cpp's default chain, in its order: the repeat penalty over the last
`repeat_last_n` tokens of the context (the prompt's included), then top_k, top_p,
min_p, and the temperature last. transformers orders its own the other way round
(temperature first, so top_p and min_p cut a flattened distribution) and its
repetition penalty covers the whole context; `generate_kwargs` turns those off and
`chain` does the sampling instead.
"""
import torch
from transformers.generation.logits_process import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


class RecentRepeatPenalty(LogitsProcessor):
    """llama.cpp's and Ollama's repeat penalty: each token among the last `window` of the
    context has its logit divided by `penalty` (multiplied where negative)."""

    def __init__(self, penalty: float, window: int):
        self.penalty, self.window = penalty, window

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.penalty == 1.0 or self.window == 0:
            return scores
        recent = input_ids[:, -self.window:]
        picked = torch.gather(scores, 1, recent)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, recent, picked)


def chain(sampling: dict) -> LogitsProcessorList:
    """The config's sampling (style_pipeline.sampling) in llama.cpp's order."""
    steps = [RecentRepeatPenalty(sampling["repeat_penalty"], sampling["repeat_last_n"])]
    if sampling["top_k"] > 0:
        steps.append(TopKLogitsWarper(sampling["top_k"]))
    if sampling["top_p"] < 1.0:
        steps.append(TopPLogitsWarper(sampling["top_p"]))
    if sampling["min_p"] > 0:
        steps.append(MinPLogitsWarper(sampling["min_p"]))
    steps.append(TemperatureLogitsWarper(sampling["temperature"]))
    return LogitsProcessorList(steps)


def generate_kwargs(sampling: dict) -> dict:
    """model.generate's sampling arguments: transformers' own samplers off (a model's
    generation_config.json would otherwise add them), `chain` in their place."""
    return {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None,
            "repetition_penalty": 1.0, "logits_processor": chain(sampling)}
