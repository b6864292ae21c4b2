"""Reference log-probs computed once and cached in the store.

The key is hash(reference weight fingerprint, prompt token ids, response token ids, temperature): the same reference
model on the same tokenised data is never scored twice, across runs, losses and β values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from evalharness.hashing import content_hash
from evalharness.scoring import Seq, sequence_logps


@dataclass
class CacheReport:
    sequences: int
    hits: int
    computed: int
    seconds: float
    kind: str = "log-probs"  # or "hidden states": ε-DPO's in-memory cache of the reference's final hidden states


class ReferenceCache:
    def __init__(self, store, fingerprint: str, temperature: float):
        self.store, self.fingerprint, self.temperature = store, fingerprint, temperature
        self.values: dict[str, float] = {}
        self._by_seq: dict[Seq, float] = {}  # lookups in the step loop skip re-hashing the token ids

    def key(self, seq: Seq) -> str:
        return content_hash(["reference-logp", self.fingerprint, seq.prompt, seq.response, self.temperature])

    def fill(self, load_model, seqs: list[Seq], pad_id: int, batch_size: int, progress: bool = True, write: bool = True):
        """Load what the store has; score the rest in batches (longest first, little padding; the sequences of one
        prompt side by side, so a batch computes each prompt once) and store it.

        ``load_model()`` returns the reference model; it is called only when something is missing.
        """
        start = time.perf_counter()
        keys = {self.key(s): s for s in seqs}  # each sequence is hashed once, here
        found = self.store.get_reference_logps(list(keys))
        for k, (lp, _) in found.items():
            self.values[k] = self._by_seq[keys[k]] = lp
        todo = _by_prompt([(k, s) for k, s in keys.items() if k not in found])
        if not todo:
            return CacheReport(len(keys), len(found), 0, time.perf_counter() - start)
        model = load_model()
        bar = tqdm(total=len(todo), desc="reference log-probs", unit="seq", disable=not progress)
        pending = []
        with torch.no_grad():
            for i in range(0, len(todo), batch_size):
                chunk = todo[i : i + batch_size]
                fwd = sequence_logps(model, [s for _, s in chunk], pad_id, self.temperature, share_prompts=True)
                for (k, s), lp, n in zip(chunk, fwd.summed.tolist(), fwd.lengths.tolist()):
                    self.values[k] = self._by_seq[s] = lp
                    pending.append((k, lp, int(n)))
                if write and len(pending) >= 1024:  # write as we go: an interrupted build resumes
                    self.store.put_reference_logps(self.fingerprint, pending)
                    pending = []
                bar.update(len(chunk))
        if write:
            self.store.put_reference_logps(self.fingerprint, pending)
        bar.close()
        return CacheReport(len(keys), len(found), len(todo), time.perf_counter() - start)

    def lookup(self, seqs: list[Seq], device) -> torch.Tensor:
        values = []
        for s in seqs:
            if s not in self._by_seq:
                self._by_seq[s] = self.values[self.key(s)]
            values.append(self._by_seq[s])
        return torch.tensor(values, dtype=torch.float32, device=device)


def _by_prompt(todo: list[tuple[str, Seq]]) -> list[tuple[str, Seq]]:
    """``todo`` grouped by prompt, the groups longest first."""
    groups: dict[tuple[int, ...], list[tuple[str, Seq]]] = {}
    for k, s in todo:
        groups.setdefault(s.prompt, []).append((k, s))
    ordered = sorted(groups.values(), key=lambda g: max(len(s) for _, s in g), reverse=True)
    return [ks for g in ordered for ks in sorted(g, key=lambda ks: len(ks[1]), reverse=True)]
