"""Judge templates: the project's own (``judges/templates/*.toml``) and third-party files loaded by path.

A template is data: chat messages with placeholders, and the name of the parser that reads the judge's answer
(``judges.parsers``): a pairwise verdict, or a grade for single-answer templates (``kind``). Its identity is a content
hash, so the judge's ``template`` attribute (``name@hash12``) changes whenever a word of the prompt or the parser
changes, and no verdict made with an old prompt is ever reused.

Specs ``load_template`` accepts:
- a built-in name: ``mt-bench``, ``mt-bench-reference``, ``arena-hard``, ``summary``, ``dialogue``,
  ``human-preference``;
- a ``.toml`` file in the built-ins' layout (``parser``, optional ``system``, ``user``, optional ``description``);
- a FastChat ``judge_prompts.jsonl`` with ``#ENTRY`` (e.g. ``.../judge_prompts.jsonl#pair-v2``): pairwise entries
  (``[[A]]``) and single-answer ones (``[[rating]]``);
- an AlpacaEval annotator directory (or its ``configs.yaml``): those whose answers a text parser can read.

``load_templates`` gives a judge its ``TemplateSet``: one template, or for a FastChat ``judge_prompts.jsonl`` named
without an entry, MT-Bench's judging as FastChat does it (``fastchat_mt_bench.toml``): a general template, a
reference-guided one for the categories judged against reference answers, and multi-turn versions of both for turn 2,
pairwise and single-answer.

Placeholders: ``{conversation}`` (every turn, "Role: text"), ``{question}`` (the user's message when the conversation
is one user turn, else the whole conversation: multi-turn conversations are always shown in full), ``{first}``,
``{second}``, ``{reference}``; FastChat's and AlpacaEval's names map onto these (``answer_a`` = ``output_1`` = first,
``answer`` the graded answer). Multi-turn templates show each response's own conversation (``answer_a_1`` is the
first model's own turn-1 answer) and a reference answer per turn.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from evalharness.hashing import content_hash
from judges import parsers
from judges.base import Answer, Comparison, JudgeError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
FASTCHAT_SET = Path(__file__).resolve().parent / "fastchat_mt_bench.toml"
_OWN_KEYS = {"description", "parser", "system", "user"}
PAIRWISE, SINGLE = "pairwise", "single"


class TemplateError(JudgeError):
    """A template that can't be loaded, or can't show a given comparison."""


@dataclass(frozen=True)
class Template:
    name: str
    messages: tuple[tuple[str, str], ...]  # (role, text with placeholders)
    parser: str  # a key of judges.parsers.PARSERS, or "regex" with parser_args = ((verdict, pattern), ...)
    parser_args: tuple[tuple[str, str], ...] = ()
    braces: bool = True  # "{{" and "}}" are literal braces (str.format's rule); AlpacaEval's files use bare braces
    description: str = ""

    @cached_property
    def hash(self) -> str:
        return content_hash({"messages": self.messages, "parser": self.parser, "parser_args": self.parser_args,
                             "braces": self.braces})

    @property
    def key(self) -> str:
        """What the judge reports as its ``template``: name and content hash."""
        return f"{self.name}@{self.hash[:12]}"

    @cached_property
    def placeholders(self) -> frozenset[str]:
        return frozenset(m for _, text in self.messages for m in re.findall(r"\{(\w+)\}", text))

    @property
    def logprob_format(self) -> parsers.LogprobFormat | None:
        """Where the verdict token sits, for formats whose verdict is one token; None for the others."""
        return parsers.LOGPROB_FORMATS.get(self.parser)

    @property
    def kind(self) -> str:
        """``pairwise`` (a verdict between two responses) or ``single`` (a grade of one answer)."""
        return SINGLE if self.parser in parsers.RATING_PARSERS else PAIRWISE

    @property
    def multi_turn(self) -> bool:
        """Whether the template shows two turns (question_1, answers to both, question_2): MT-Bench's turn 2."""
        return "question_2" in self.placeholders

    def parse(self, text: str) -> str:
        return parser_for(self.parser, self.parser_args)(text)

    def rate(self, text: str) -> float | None:
        return parsers.RATING_PARSERS[self.parser](text)

    def strong(self, text: str) -> bool | None:
        """Whether the verdict was given strongly, for formats with levels (Arena-Hard's); None for the others."""
        read = parsers.STRENGTH.get(self.parser)
        return read(text) if read else None

    def render(self, c: Comparison | Answer) -> list[dict[str, str]]:
        """The chat messages that show ``c`` to the judge, e.g. [{"role": "system", ...}, {"role": "user", ...}]."""
        if isinstance(c, Answer):
            c = Comparison(c.messages, c.text, "", c.reference, c.turn, None, c.references, c.category)
        multi_turn = self.multi_turn
        values = {name: _value(name, c, self.name, multi_turn) for name in self.placeholders & _KNOWN}
        out = []
        for role, text in self.messages:
            out.append({"role": role, "content": _fill(text, values, self.braces)})
        return out


def parser_for(name: str, args: tuple[tuple[str, str], ...] = ()) -> Callable[[str], str]:
    if name == "regex":
        patterns = dict(args)
        return lambda text: parsers.regex_verdict(text, patterns)
    try:
        return parsers.PARSERS[name]
    except KeyError:
        pass
    if name in parsers.RATING_PARSERS:
        raise TemplateError(f"parser {name!r} reads a grade, not a verdict: the template is for single-answer "
                            "grading (mode=single)")
    raise TemplateError(_unknown("parser", name, [*parsers.PARSERS, "regex", *parsers.RATING_PARSERS]))


@dataclass(frozen=True)
class TemplateSet:
    """The templates one judge chooses from, by kind, turn and category.

    ``cases`` maps a case name to a template: ``pairwise`` / ``single``, plus ``-ref`` for the categories judged
    against reference answers (``reference_categories``) and ``-multi`` for turn 2 of a two-turn set, e.g.
    ``pairwise-ref-multi``. A set of one template has that template's key, so a judge given one template keeps the
    cache keys it always had.
    """

    name: str
    cases: tuple[tuple[str, Template], ...]
    reference_categories: frozenset[str] = frozenset()

    @classmethod
    def of(cls, template: Template) -> TemplateSet:
        return cls(template.name, ((_case(template.kind, False, template.multi_turn), template),))

    @cached_property
    def key(self) -> str:
        if len(self.cases) == 1 and not self.reference_categories:
            return self.cases[0][1].key
        digest = content_hash({"cases": [(c, t.hash) for c, t in self.cases],
                               "reference_categories": sorted(self.reference_categories)})
        return f"{self.name}@{digest[:12]}"

    def kinds(self) -> set[str]:
        return {t.kind for _, t in self.cases}

    def turns(self, kind: str) -> set[int]:
        """The turns this set can judge for a kind: 1 (single-turn templates) and 2 (multi-turn ones)."""
        return {2 if t.multi_turn else 1 for _, t in self.cases if t.kind == kind}

    def pick(self, kind: str, turn: int, category: str | None) -> Template:
        """The template for one item; a reference-guided case falls back to the general one when there is none."""
        found = dict(self.cases)
        multi = turn > 1
        ref = category in self.reference_categories
        for case in ([_case(kind, True, multi)] if ref else []) + [_case(kind, False, multi)]:
            if case in found:
                return found[case]
        raise TemplateError(f"template {self.key}: no {kind} template for turn {turn}"
                            + (f" (category {category!r})" if category else "")
                            + f"; it has: {', '.join(c for c, _ in self.cases)}")


def _case(kind: str, reference: bool, multi: bool) -> str:
    return kind + ("-ref" if reference else "") + ("-multi" if multi else "")


def load_templates(spec: str) -> TemplateSet:
    """A judge's templates: FastChat's MT-Bench set for a ``judge_prompts.jsonl`` named without an entry, else the one
    template ``load_template`` reads."""
    spec = str(spec).strip()
    path = Path(spec).expanduser()
    if "#" not in spec and path.is_file() and path.suffix == ".jsonl":
        return load_fastchat_set(path)
    return TemplateSet.of(load_template(spec))


def load_fastchat_set(path: Path) -> TemplateSet:
    """FastChat's MT-Bench judging from its ``judge_prompts.jsonl``: the entries ``fastchat_mt_bench.toml`` names."""
    import tomllib

    with open(FASTCHAT_SET, "rb") as f:
        plan = tomllib.load(f)
    cases = tuple((case, load_fastchat(path, entry)) for case, entry in plan["entries"].items())
    for case, template in cases:
        if _case(template.kind, case.split("-")[1:2] == ["ref"], template.multi_turn) != case:
            raise TemplateError(f"{path}#{template.name.split(':', 1)[1]}: not a {case} template")
    return TemplateSet(plan["name"], cases, frozenset(plan["reference_categories"]))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.toml"))


def load_template(spec: str) -> Template:
    """A template from a built-in name or a path (see the module docstring for the forms)."""
    spec = str(spec).strip()
    if (TEMPLATE_DIR / f"{spec}.toml").is_file() and "/" not in spec:
        return load_own(TEMPLATE_DIR / f"{spec}.toml")
    path_text, _, entry = spec.partition("#")
    path = Path(path_text).expanduser()
    if path.is_dir() and (path / "configs.yaml").is_file():
        return load_alpaca_eval(path / "configs.yaml")
    if path.is_file() and path.name in ("configs.yaml", "configs.yml"):
        return load_alpaca_eval(path)
    if path.is_file() and path.suffix == ".jsonl":
        return load_fastchat(path, entry)
    if path.is_file() and path.suffix == ".toml":
        return load_own(path)
    if path.exists():
        raise TemplateError(f"template {spec!r}: not a .toml template, a FastChat .jsonl or an AlpacaEval directory "
                            "with configs.yaml")
    raise TemplateError(_unknown("template", spec, builtin_names())
                        + " (or give a path: a .toml, judge_prompts.jsonl#ENTRY or an AlpacaEval directory)")


def load_own(path: Path) -> Template:
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TemplateError(f"{path}: {e}") from None
    extra = set(data) - _OWN_KEYS
    if extra:
        raise TemplateError(f"{path}: unknown field(s) {', '.join(sorted(extra))} (fields: {', '.join(sorted(_OWN_KEYS))})")
    for key in ("parser", "user"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise TemplateError(f"{path}: field {key!r} is missing or not a non-empty string")
    messages = ((("system", data["system"]),) if data.get("system") else ()) + (("user", data["user"]),)
    template = Template(path.stem, messages, data["parser"], description=data.get("description", ""))
    if template.kind == PAIRWISE:
        try:
            parser_for(template.parser)
        except TemplateError as e:
            raise TemplateError(f"{path}: {e}") from None
    unknown = sorted(template.placeholders - _KNOWN)
    if unknown:
        raise TemplateError(f"{path}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} (known: "
                            f"{', '.join(sorted(_OWN_PLACEHOLDERS))}; write {{{{ and }}}} for literal braces)")
    if template.kind == PAIRWISE and not {"first", "second"} <= template.placeholders:
        raise TemplateError(f"{path}: a pairwise template must show {{first}} and {{second}}")
    if template.kind == SINGLE and not template.placeholders & {"answer", "answer_2"}:
        raise TemplateError(f"{path}: a single-answer template (parser {template.parser!r}) must show {{answer}}")
    return template


def load_fastchat(path: Path, entry: str) -> Template:
    """An entry of FastChat's ``judge_prompts.jsonl`` (fields name, type, system_prompt, prompt_template,
    output_format): a pairwise one answering ``[[A]]``, or a single-answer one answering ``[[rating]]``."""
    entries = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                entries[row["name"]] = row
            except (ValueError, KeyError, TypeError):
                raise TemplateError(f"{path}:{lineno}: not a JSON object with a 'name'") from None
    pairwise = [n for n, r in entries.items() if r.get("type") == "pairwise"]
    if not entry:
        raise TemplateError(f"{path}: name an entry after '#', e.g. {path.name}#{pairwise[0] if pairwise else 'NAME'} "
                            f"(pairwise entries: {', '.join(pairwise) or 'none'}); the llm judge takes the file "
                            "alone as FastChat's whole MT-Bench set")
    if entry not in entries:
        raise TemplateError(f"{path}: " + _unknown("entry", entry, list(entries)))
    row = entries[entry]
    formats = {"pairwise": ("[[A]]", "mt-bench"), "single": ("[[rating]]", "rating")}
    if row.get("type") not in formats:
        raise TemplateError(f"{path}#{entry}: type {row.get('type')!r} is not supported (supported: pairwise, "
                            "single)")
    output, parser = formats[row["type"]]
    if row.get("output_format") != output:
        raise TemplateError(f"{path}#{entry}: output format {row.get('output_format')!r} is not supported "
                            f"(supported for {row['type']}: {output})")
    messages = (("system", row.get("system_prompt", "")), ("user", row["prompt_template"]))
    return Template(f"fastchat:{entry}", tuple(m for m in messages if m[1]), parser,
                    description=row.get("description", ""))


def load_alpaca_eval(config: Path) -> Template:
    """An AlpacaEval annotator: ``configs.yaml`` names the prompt file (relative to the annotators' root) and parser.

    Supported parsers: ``ranking_parser`` (a ranked list), ``logprob_parser`` over identifiers m/M (its verdict is the
    answer's identifier; the probability comes from log-probs when the judge asks for them) and the default regex
    parser with ``outputs_to_match``. Function-calling annotators are refused with the reason.
    """
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise TemplateError(f"{config}: {e}") from None
    if not isinstance(data, dict) or not data:
        raise TemplateError(f"{config}: expected a mapping of annotator name to settings")
    name = config.parent.name if config.parent.name in data else next(iter(data))
    cfg = data[name]
    where = f"{config} ({name})"
    kwargs = cfg.get("completions_kwargs") or {}
    if "tools" in kwargs or "functions" in kwargs or "tool_choice" in kwargs:
        raise TemplateError(f"{where}: function-calling annotators are not supported (the judge reads text answers); "
                            "supported parsers: ranking_parser, logprob_parser (m/M), regex outputs_to_match")
    parser_name, args = _alpaca_parser(cfg, where)
    prompt_path = config.parent.parent / str(cfg.get("prompt_template", ""))
    if not prompt_path.is_file():
        raise TemplateError(f"{where}: prompt_template {cfg.get('prompt_template')!r} not found at {prompt_path}")
    text = prompt_path.read_text(encoding="utf-8")
    blocks = re.findall(r"<\|im_start\|>(\w+)\n(.*?)\n?<\|im_end\|>", text, re.S)
    messages = tuple((role, body) for role, body in blocks) if blocks else (("user", text),)
    return Template(f"alpaca_eval:{name}", messages, parser_name, args, braces=False)


def _alpaca_parser(cfg: Mapping, where: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    parser = cfg.get("fn_completion_parser") or "regex_parser"
    kwargs = cfg.get("completion_parser_kwargs") or {}
    if parser == "ranking_parser" and kwargs.get("model_1_name", "model_1") == "model_1":
        return "alpaca-ranking", ()
    if (parser == "logprob_parser" and kwargs.get("numerator_token") == "m"
            and sorted(kwargs.get("denominator_tokens", [])) == ["M", "m"]):
        return "model-identifier", ()
    if parser == "regex_parser" and set(map(str, kwargs.get("outputs_to_match", {}))) == {"1", "2"}:
        match = {str(k): str(v) for k, v in kwargs["outputs_to_match"].items()}
        return "regex", (("first", match["1"]), ("second", match["2"]))
    raise TemplateError(f"{where}: parser {parser!r} with arguments {dict(kwargs)} is not supported (supported: "
                        "ranking_parser, logprob_parser over m/M, regex_parser with outputs_to_match 1 and 2)")


# --- placeholder values ------------------------------------------------------------------------------------------

_OWN_PLACEHOLDERS = {"conversation", "question", "first", "second", "reference"}
_KNOWN = _OWN_PLACEHOLDERS | {
    "answer_a", "answer_b", "ref_answer_1",  # FastChat single-turn
    "question_1", "question_2", "answer_a_1", "answer_a_2", "answer_b_1", "answer_b_2", "ref_answer_2",  # multi-turn
    "answer", "answer_1", "answer_2",  # FastChat single-answer grading
    "instruction", "output_1", "output_2",  # AlpacaEval
}


def _value(name: str, c: Comparison, template: str, multi_turn: bool) -> str:
    if name in ("first", "answer_a", "output_1", "answer_a_2", "answer", "answer_2"):
        return c.first
    if name in ("second", "answer_b", "output_2", "answer_b_2"):
        return c.second
    if name == "conversation":
        return c.conversation()
    if name in ("question", "instruction"):
        single = len(c.messages) == 1 and c.messages[0].role == "user"
        return c.messages[0].content if single else c.conversation()
    if name in ("ref_answer_1", "ref_answer_2") and multi_turn:
        if len(c.references) < 2 or not all(c.references[:2]):
            raise TemplateError(f"template {template!r} shows a reference answer for each of two turns; the "
                                f"comparison carries {len([r for r in c.references[:2] if r])} "
                                f"(question: {c.question[:60]!r})")
        return c.references[int(name[-1]) - 1]
    if name in ("reference", "ref_answer_1", "ref_answer_2"):
        if not c.reference:
            raise TemplateError(f"template {template!r} shows a reference answer and a comparison has none "
                                f"(question: {c.question[:60]!r})")
        return c.reference
    history = c.second_messages if name == "answer_b_1" and c.second_messages is not None else c.messages
    roles = [m.role for m in history if m.role != "system"]
    if roles != ["user", "assistant", "user"]:
        raise TemplateError(f"template {template!r} shows two turns (user, assistant, user); a comparison has "
                            f"{'/'.join(roles) or 'no messages'}")
    users = [m.content for m in history if m.role == "user"]
    # Each response's own first answer: a model's turn 2 was conditioned on what it said at turn 1.
    assistant = next(m.content for m in history if m.role == "assistant")
    return {"question_1": users[0], "question_2": users[1], "answer_a_1": assistant, "answer_b_1": assistant,
            "answer_1": assistant}[name]


def _fill(text: str, values: Mapping[str, str], braces: bool) -> str:
    """Substitute ``{name}`` in one pass, so a response that contains "{second}" is shown as written."""
    pattern = r"\{\{|\}\}|\{(\w+)\}" if braces else r"\{(\w+)\}"

    def sub(m: re.Match) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        return values.get(m.group(1), m.group(0))

    return re.sub(pattern, sub, text)


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {kind} {name!r} ({hint}known: {', '.join(known) or 'none'})"
