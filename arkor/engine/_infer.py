"""Chat generation with LoRA adapters: what the control plane's inference route calls.

Base models stay loaded in a small LRU cache, because loading one costs seconds to
minutes while answering costs milliseconds per token. Each base is wrapped in a
``PeftModel`` once and adapters are swapped on it in place (peft's multi-adapter
support), so asking another checkpoint of the same base costs an adapter load, never a
base load. Tokens come from a plain decode loop over the KV cache rather than
``generate()``: streaming then needs no thread, closing a stream stops generation at
once, and a seeded request samples from its own RNG instead of torch's global one.
Evaluation is the exception: many greedy answers at once, where ``generate()`` over
left-padded batches is several times faster per row and nothing streams.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from arkor.cloud import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionMessage,
    ChoiceDelta,
    CompletionUsage,
    FinishReason,
)
from arkor.engine._device import Placement, choose_placement
from arkor.engine._models import ResolvedModel, load_model, load_tokenizer, resolve_model
from arkor.errors import ArkorError

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

_PROBE = "ArkorEndOfTurnProbe"
"""Assistant text rendered through a chat template to find what the template closes a turn with."""

_AdapterSignature = tuple[tuple[str, int, int, int], ...]


class InferenceError(ArkorError):
    """A request cannot be answered as asked; the message says why and what to change."""


class GenerationStopped(ArkorError):
    """:meth:`InferenceEngine.generate_batch` was asked to stop before it finished."""


@dataclass(frozen=True)
class GenerationRequest:
    """One chat completion, with the adapter already resolved to a folder by the caller."""

    base_model: str
    """What :func:`~arkor.engine._models.resolve_model` accepts: a folder, a store name, a Hub id."""
    adapter_path: Path | None
    """A PEFT adapter folder (a checkpoint or a final adapter), or ``None`` for the bare base."""
    messages: list[dict[str, str]]
    temperature: float = 0.7
    """0 picks the most likely token every time (greedy), so answers are reproducible."""
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    """Makes sampling reproducible without touching torch's global RNG."""
    base_revision: str | None = None
    """The Hub commit to load a Hub id at (the one its adapter was trained on); None: the branch."""
    response_format: dict[str, Any] | None = None
    """OpenAI's ``response_format``: ``{"type": "json_object"}`` or ``{"type": "json_schema",
    "json_schema": {"schema": {...}}}`` constrain the answer to valid JSON (of the schema)."""

    def __post_init__(self) -> None:
        if not self.messages:
            raise InferenceError("A chat request needs at least one message.")
        if self.temperature < 0:
            raise InferenceError(f"temperature must be 0 or more, not {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise InferenceError(f"top_p must be above 0 and at most 1, not {self.top_p}.")
        if self.max_tokens < 1:
            raise InferenceError(f"max_tokens must be at least 1, not {self.max_tokens}.")


@dataclass(frozen=True)
class EngineStats:
    """How often weights were read from disk: what the caches exist to keep low."""

    base_loads: int
    base_evictions: int
    adapter_loads: int


class InferenceEngine:
    """Answers chat requests on base models and LoRA adapters, keeping recent bases loaded.

    Thread-safe: requests on different bases run in parallel, requests on one base take
    turns (one generation at a time per base). A stream holds its base until it is
    exhausted or closed, so a caller must finish or close a stream before asking the same
    base again from the same thread.
    """

    def __init__(
        self, *, max_bases: int = 2, max_adapters: int = 8, placement: Placement | None = None
    ) -> None:
        if max_bases < 1 or max_adapters < 1:
            raise ValueError("max_bases and max_adapters must be at least 1")
        self._max_bases = max_bases
        self._max_adapters = max_adapters
        self._placement = placement
        self._bases: OrderedDict[str, _Base] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._base_loads = 0
        self._base_evictions = 0
        self._adapter_loads = 0

    @property
    def stats(self) -> EngineStats:
        """A snapshot of the load and eviction counters."""
        with self._lock:
            return EngineStats(self._base_loads, self._base_evictions, self._adapter_loads)

    def complete(
        self, request: GenerationRequest, *, model_name: str | None = None
    ) -> ChatCompletion:
        """The whole answer as one ``chat.completion``; ``model_name`` defaults to the base."""
        job = self._prepare(request)
        with self._generating(job) as tokens:
            ids = list(tokens)
        finish = job.base.finish_reason(ids)
        text = job.base.decode(ids[:-1] if finish == "stop" else ids)
        return ChatCompletion(
            id=_completion_id(),
            created=int(time.time()),
            model=model_name or request.base_model,
            choices=[
                ChatCompletionChoice(
                    message=ChatCompletionMessage(content=text), finish_reason=finish
                )
            ],
            usage=job.usage(len(ids)),
        )

    def stream(
        self, request: GenerationRequest, *, model_name: str | None = None
    ) -> Iterator[ChatCompletionChunk]:
        """The answer as ``chat.completion.chunk`` objects, token by token.

        The first chunk carries the role, the last one the finish reason and usage. The
        base, adapter and prompt are loaded and checked before this returns, so a bad
        request fails here rather than after the caller has started a response.
        """
        job = self._prepare(request)
        return self._chunks(job, model_name or request.base_model)

    def generate_batch(
        self,
        base_model: str,
        base_revision: str | None,
        adapter_path: Path | None,
        prompts: Sequence[list[dict[str, Any]]],
        *,
        max_new_tokens: int,
        batch_size: int,
        progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> list[str]:
        """Greedy answers to many chats, ``batch_size`` at a time; in the order of ``prompts``.

        Each answer is what :meth:`complete` gives at temperature 0 (decoded the same way),
        but rows of similar length share one ``generate`` call, left-padded, which is
        several times faster per row on a CPU. The base is held one batch at a time, so
        chat requests interleave with a long evaluation. ``progress(done, total)`` follows
        each batch; a set ``stop`` ends the work between batches with
        :class:`GenerationStopped`. ``adapter_path`` None answers with the bare base.
        """
        if max_new_tokens < 1 or batch_size < 1:
            raise InferenceError("max_new_tokens and batch_size must be at least 1.")
        base = self._base(base_model, base_revision)
        adapter = adapter_path.resolve() if adapter_path else None
        with base.lock:
            encoded = [base.encode(messages) for messages in prompts]
            if adapter is not None:
                self._use_adapter(base, adapter)
        budgets = [base.budget(len(ids), max_new_tokens) for ids in encoded]
        # similar lengths share a batch, so little of it is padding
        order = sorted(range(len(encoded)), key=lambda index: len(encoded[index]))
        answers: list[str] = [""] * len(encoded)
        for start in range(0, len(order), batch_size):
            if stop is not None and stop.is_set():
                raise GenerationStopped("Generation was stopped.")
            chosen = order[start : start + batch_size]
            with base.lock:
                name = self._use_adapter(base, adapter) if adapter else None
                with base.adapter_scope(name):
                    outputs = base.generate_greedy(
                        [encoded[index] for index in chosen],
                        min(budgets[index] for index in chosen),
                    )
            for index, ids in zip(chosen, outputs, strict=True):
                answers[index] = base.decode(ids[: budgets[index]])
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
        return answers

    def _chunks(self, job: _Job, model: str) -> Iterator[ChatCompletionChunk]:
        ident, created = _completion_id(), int(time.time())

        def chunk(
            delta: ChoiceDelta,
            finish: FinishReason | None = None,
            usage: CompletionUsage | None = None,
        ) -> ChatCompletionChunk:
            choice = ChatCompletionChunkChoice(delta=delta, finish_reason=finish)
            return ChatCompletionChunk(
                id=ident, created=created, model=model, choices=[choice], usage=usage
            )

        yield chunk(ChoiceDelta(role="assistant", content=""))
        deltas = _TextDeltas(job.base.decode)
        ids: list[int] = []
        with self._generating(job) as tokens:
            for token in tokens:
                ids.append(token)
                if token not in job.base.stop_ids and (text := deltas.push(token)):
                    yield chunk(ChoiceDelta(content=text))
        if text := deltas.flush():
            yield chunk(ChoiceDelta(content=text))
        yield chunk(ChoiceDelta(), job.base.finish_reason(ids), job.usage(len(ids)))

    def _prepare(self, request: GenerationRequest) -> _Job:
        """Load what the request needs and render its prompt, so errors surface before tokens."""
        base = self._base(request.base_model, request.base_revision)
        adapter = request.adapter_path.resolve() if request.adapter_path else None
        with base.lock:
            prompt = base.encode(request.messages)
            if adapter is not None:
                self._use_adapter(base, adapter)
        budget = base.budget(len(prompt), request.max_tokens)
        constraint = _Constraint.of(base, request.response_format)
        return _Job(base, adapter, prompt, budget, _Sampling.of(request, base.device), constraint)

    @contextmanager
    def _generating(self, job: _Job) -> Iterator[Iterator[int]]:
        """Hold the base and its adapter for one generation; leaving releases both."""
        with job.base.lock:
            name = self._use_adapter(job.base, job.adapter) if job.adapter else None
            with job.base.adapter_scope(name):
                yield job.base.generate(job.prompt, job.budget, job.sampling, job.constraint)

    def _use_adapter(self, base: _Base, folder: Path) -> str:
        """The adapter's name on ``base``; a failed load drops the base it may have half-changed."""
        try:
            name, loaded = base.adapter(folder)
        except InferenceError:
            raise
        except Exception as error:  # peft raises many kinds on a mismatched or corrupt adapter
            self._forget(base)
            detail = " ".join(str(error).split())  # torch lists every mismatched tensor
            raise InferenceError(
                f"Cannot load the adapter at {folder} onto `{base.resolved.requested}`: "
                f"{detail[:300] + ' …' if len(detail) > 300 else detail} Check that the adapter "
                "was trained on this base model."
            ) from error
        if loaded:
            with self._lock:
                self._adapter_loads += 1
        return name

    def _base(self, name: str, revision: str | None = None) -> _Base:
        """The cached base ``name`` (at ``revision``), loading it once, even when asked concurrently.

        Bases are cached by the name requests give, so resolving a name (a model store
        lookup, a ``.gguf`` file's digest) costs only on a miss.
        """
        key = _base_key(name, revision)
        with self._lock:
            if (base := self._cached(key)) is not None:
                return base
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if (base := self._cached(key)) is not None:
                    return base
                placement = self._placement = self._placement or choose_placement()
            try:
                base = _Base(resolve_model(name, revision=revision), placement, self._max_adapters)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                # cached in the same step as the loading lock goes, so no one loads it twice
                self._loading.pop(key, None)
                self._base_loads += 1
                self._bases[key] = base
                while len(self._bases) > self._max_bases:
                    self._bases.popitem(last=False)
                    self._base_evictions += 1
            return base

    def _cached(self, key: str) -> _Base | None:
        base = self._bases.get(key)
        if base is not None:
            self._bases.move_to_end(key)
        return base

    def _forget(self, base: _Base) -> None:
        with self._lock:
            key = _base_key(base.resolved.requested, base.resolved.revision)
            if self._bases.get(key) is base:
                del self._bases[key]


def _base_key(name: str, revision: str | None) -> str:
    """How a base is cached: by its name, and the commit for a Hub id loaded at one."""
    return name if revision is None else f"{name}@{revision}"


@dataclass(frozen=True)
class _Sampling:
    temperature: float
    top_p: float
    generator: torch.Generator | None

    @classmethod
    def of(cls, request: GenerationRequest, device: str) -> _Sampling:
        import torch

        generator = None
        if request.seed is not None and request.temperature > 0:
            generator = torch.Generator(device=device).manual_seed(request.seed)
        return cls(request.temperature, request.top_p, generator)

    def pick(self, logits: torch.Tensor) -> int:
        """The next token: the most likely at temperature 0, else a draw from the nucleus."""
        import torch

        if self.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            # keep the smallest prefix whose mass reaches top_p (the first token always stays)
            sorted_probs[sorted_probs.cumsum(-1) - sorted_probs >= self.top_p] = 0
            return int(order[torch.multinomial(sorted_probs, 1, generator=self.generator)])
        return int(torch.multinomial(probs, 1, generator=self.generator))


@dataclass(frozen=True)
class _Job:
    base: _Base
    adapter: Path | None
    prompt: list[int]
    budget: int
    sampling: _Sampling
    constraint: _Constraint | None = None

    def usage(self, completion_tokens: int) -> CompletionUsage:
        return CompletionUsage(
            prompt_tokens=len(self.prompt),
            completion_tokens=completion_tokens,
            total_tokens=len(self.prompt) + completion_tokens,
        )


class _Base:
    """One loaded base model with its tokenizer, and the adapters loaded onto it.

    What touches the tokenizer's state, the model or the adapters runs under :attr:`lock`.
    """

    def __init__(self, resolved: ResolvedModel, placement: Placement, max_adapters: int) -> None:
        self.resolved = resolved
        self.device = placement.device
        self.tokenizer = load_tokenizer(resolved)
        self.model = load_model(resolved, placement)
        self.model.eval()  # type: ignore[no-untyped-call]
        self.peft: PeftModel | None = None
        # a plain Lock, not an RLock: a web server may resume a stream on another thread
        self.lock = threading.Lock()
        self.stop_ids = _stop_ids(self.tokenizer, self.model)
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = pad if isinstance(pad, int) else min(self.stop_ids, default=0)
        """What batched generation left-pads with: masked out, so any id does."""
        self.context: int | None = getattr(self.model.config, "max_position_embeddings", None)
        accepted = inspect.signature(self.model.forward).parameters
        # only the last position's logits are needed: skips a prompt-length × vocab matrix
        self.forward_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        # transformers 5.24 renamed forward's `past_key_values` to `cache` and warns on the old name
        self.cache_argument = "cache" if "cache" in accepted else "past_key_values"
        self.adapters: OrderedDict[Path, tuple[str, _AdapterSignature]] = OrderedDict()
        self.max_adapters = max_adapters
        self.names = (f"adapter{n}" for n in itertools.count())
        self._llguidance_tokenizer: Any = None

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt's ids through the chat template, ending with the assistant's turn header."""
        from jinja2 import TemplateError

        if not self.tokenizer.chat_template:
            raise InferenceError(
                f"`{self.resolved.requested}` has no chat template, so it cannot take chat messages. "
                "Use an instruction-tuned model, or a base model whose tokenizer defines one."
            )
        try:
            encoded = self.tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                # text like "<|im_end|>" inside a message stays text: it cannot forge a turn
                sanitize_control_tokens=True,
            )
        except TemplateError as error:
            raise InferenceError(
                f"The chat template of `{self.resolved.requested}` rejected the messages: {error}"
            ) from error
        return list(cast("BatchEncoding", encoded)["input_ids"])

    def budget(self, prompt_tokens: int, max_tokens: int) -> int:
        """``max_tokens``, capped so the answer fits the model's context window."""
        if self.context is None:
            return max_tokens
        room = self.context - prompt_tokens
        if room < 1:
            raise InferenceError(
                f"The conversation is {prompt_tokens} tokens; `{self.resolved.requested}` reads at "
                f"most {self.context}. Shorten it or drop earlier messages."
            )
        return min(max_tokens, room)

    def decode(self, ids: Sequence[int]) -> str:
        # no space clean-up: it rewrites text across token boundaries, which a stream can't undo
        text = self.tokenizer.decode(
            list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        assert isinstance(text, str)
        return text

    def llguidance_tokenizer(self) -> Any:
        """The tokenizer as llguidance reads it, built once per base (it indexes the vocabulary)."""
        if self._llguidance_tokenizer is None:
            import llguidance.hf

            self._llguidance_tokenizer = llguidance.hf.from_tokenizer(
                self.tokenizer,  # type: ignore[arg-type]  # a fast tokenizer, as AutoTokenizer loads
                n_vocab=self.model.config.vocab_size,
            )
        return self._llguidance_tokenizer

    def finish_reason(self, ids: Sequence[int]) -> FinishReason:
        return "stop" if ids and ids[-1] in self.stop_ids else "length"

    def adapter(self, folder: Path) -> tuple[str, bool]:
        """The peft name of the adapter in ``folder`` and whether it was (re)loaded just now."""
        signature = _adapter_signature(folder)
        known = self.adapters.get(folder)
        if known is not None and known[1] == signature:
            self.adapters.move_to_end(folder)
            return known[0], False
        name = next(self.names)
        if self.peft is None:
            from peft import PeftModel

            with warnings.catch_warnings():
                # peft reads this deprecated property when it wraps a model: keep it out of the log
                warnings.filterwarnings(
                    "ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning
                )
                self.peft = PeftModel.from_pretrained(self.model, folder, adapter_name=name)
        else:
            self.peft.load_adapter(folder, adapter_name=name)
        # the newest adapter is active, so dropping older ones below never removes the active one
        self.peft.set_adapter(name)
        if known is not None:
            self.peft.delete_adapter(known[0])
        self.adapters[folder] = (name, signature)
        self.adapters.move_to_end(folder)
        while len(self.adapters) > self.max_adapters:
            _, (stale, _) = self.adapters.popitem(last=False)
            self.peft.delete_adapter(stale)
        return name, True

    def adapter_scope(self, name: str | None) -> AbstractContextManager[Any]:
        """Make ``name`` the active adapter, or switch adapters off for the bare base."""
        if self.peft is None:
            return nullcontext()
        if name is None:
            return self.peft.disable_adapter()
        if self.peft.active_adapter != name:
            self.peft.set_adapter(name)
        return nullcontext()

    def generate(
        self,
        prompt: list[int],
        budget: int,
        sampling: _Sampling,
        constraint: _Constraint | None = None,
    ) -> Iterator[int]:
        """Yield up to ``budget`` new ids; a stop id, when one comes, is yielded last.

        With a ``constraint``, each step picks only among the tokens it allows.
        """
        import torch
        from transformers import DynamicCache

        model = self.peft if self.peft is not None else self.model
        inputs = torch.tensor([prompt], device=self.device)
        # each forward appends this step's keys and values to the cache in place
        cache = DynamicCache(config=self.model.config)
        kwargs = {self.cache_argument: cache, **self.forward_kwargs}
        for _ in range(budget):
            # grad mode is per thread and a stream may resume on another one: set it per step
            with torch.inference_mode():
                output = model(input_ids=inputs, use_cache=True, **kwargs)
                logits = output.logits[0, -1]
                if constraint is not None:
                    constraint.mask(logits)
                token = sampling.pick(logits)
            if constraint is not None:
                constraint.consume(token)
            yield token
            if token in self.stop_ids:
                return
            inputs = torch.tensor([[token]], device=self.device)

    def generate_greedy(self, prompts: list[list[int]], budget: int) -> list[list[int]]:
        """Each prompt's greedy new ids up to ``budget``, stop id excluded, in one batch.

        Prompts are left-padded so every row's next token sits in the last column;
        ``generate`` derives positions from the attention mask, so padding changes nothing
        but the work.
        """
        import torch
        from transformers import GenerationConfig

        model = self.peft if self.peft is not None else self.model
        width = max(len(ids) for ids in prompts)
        pad = self.pad_id
        inputs = torch.tensor(
            [[pad] * (width - len(ids)) + ids for ids in prompts], device=self.device
        )
        mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=self.device
        )
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=False,
            max_new_tokens=budget,
            eos_token_id=sorted(self.stop_ids),
            pad_token_id=pad,
        )
        with torch.inference_mode():
            output = model.generate(  # type: ignore[operator]  # peft forwards it
                input_ids=inputs, attention_mask=mask, generation_config=config
            )
        rows: list[list[int]] = []
        for generated in cast("torch.Tensor", output)[:, width:].tolist():
            end = next((at for at, token in enumerate(generated) if token in self.stop_ids), None)
            rows.append(generated[:end])
        return rows


class _Constraint:
    """Constrained decoding with llguidance: only tokens that keep the answer valid JSON.

    The grammar comes from the JSON Schema (any object for ``json_object``), compiled for
    the base's tokenizer; JSON is kept compact so a small model cannot pad it with spaces.
    """

    def __init__(self, base: _Base, schema: dict[str, Any]) -> None:
        import llguidance
        import llguidance.torch

        tokenizer = base.llguidance_tokenizer()
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema, defaults={"whitespace_flexible": False}
        )
        problem = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
        if problem:
            raise InferenceError(f"The response_format's JSON Schema cannot be used: {problem}")
        self.matcher = llguidance.LLMatcher(tokenizer, grammar)
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, tokenizer.vocab_size)

    @classmethod
    def of(cls, base: _Base, response_format: dict[str, Any] | None) -> _Constraint | None:
        """The constraint ``response_format`` asks for, or None for plain text."""
        kind = (response_format or {}).get("type", "text")
        if kind == "text":
            return None
        if kind == "json_object":
            return cls(base, {"type": "object"})
        if kind == "json_schema":
            spec = (response_format or {}).get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise InferenceError(
                    "A `json_schema` response_format needs `json_schema.schema`: the JSON Schema "
                    "(an object) the answer must follow."
                )
            return cls(base, schema)
        raise InferenceError(
            f"response_format type `{kind}` is unknown: use `text`, `json_object` or `json_schema`."
        )

    def mask(self, logits: torch.Tensor) -> None:
        """Push every token the grammar forbids next to -inf, in place."""
        import llguidance.torch

        llguidance.torch.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        llguidance.torch.apply_token_bitmask_inplace(
            logits.unsqueeze(0), self.bitmask.to(logits.device)
        )

    def consume(self, token: int) -> None:
        self.matcher.consume_token(token)


class _TextDeltas:
    """Turns ids into text pieces that are safe to send one by one.

    A piece is never half a character (byte-level BPE splits multi-byte characters
    across tokens), and each is decoded together with the previous piece, so tokenizers
    that drop a word's leading space at the start of a decode keep it mid-answer. The
    pieces join to the same text as decoding all ids at once.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._start = 0  # where the context decode begins: the start of the previous piece
        self._sent = 0  # where the ids not yet sent begin

    def push(self, token: int) -> str:
        """Add one id; return the text it completes ('' while a character is still partial)."""
        self._ids.append(token)
        sent, text = self._pending()
        if len(text) > len(sent) and not text.endswith("\ufffd"):
            self._start, self._sent = self._sent, len(self._ids)
            return text[len(sent) :]
        return ""

    def flush(self) -> str:
        """Whatever is left when generation ends, partial characters included."""
        sent, text = self._pending()
        self._start = self._sent = len(self._ids)
        return text[len(sent) :]

    def _pending(self) -> tuple[str, str]:
        window = self._ids[self._start :]
        return self._decode(window[: self._sent - self._start]), self._decode(window)


def _stop_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> frozenset[int]:
    """EOS from the tokenizer and the generation config, plus the template's end-of-turn token."""
    configured = model.generation_config.eos_token_id if model.generation_config else None
    ids = [*(configured if isinstance(configured, list) else [configured])]
    ids += [tokenizer.eos_token_id, _end_of_turn_id(tokenizer)]
    return frozenset(i for i in ids if isinstance(i, int))


def _end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token a chat template writes after an assistant message, if any.

    Chat models end a turn with a token of their own (``<|im_end|>``, ``<|eot_id|>``,
    ``<end_of_turn>``) that is often not the tokenizer's EOS; rendering a probe answer
    finds it without a list of model families.
    """
    if not tokenizer.chat_template:
        return None
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    except Exception:  # a template that rejects the probe just gets no extra stop token
        return None
    if not isinstance(rendered, str) or _PROBE not in rendered:
        return None
    after = rendered.split(_PROBE, 1)[1].lstrip()
    ids = tokenizer.encode(after, add_special_tokens=False)[:1] if after else []
    if not ids:
        return None
    token = tokenizer.added_tokens_decoder.get(ids[0])
    return ids[0] if token is not None and token.special else None


def _adapter_signature(folder: Path) -> _AdapterSignature:
    """Identity of the adapter files on disk, so a rewritten folder is loaded again."""
    if not (folder / "adapter_config.json").is_file():
        raise InferenceError(
            f"{folder} is not a PEFT adapter folder (it has no adapter_config.json)."
        )
    stats = ((path.name, path.stat()) for path in sorted(folder.glob("adapter_*")))
    return tuple((name, s.st_ino, s.st_size, s.st_mtime_ns) for name, s in stats)


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"
