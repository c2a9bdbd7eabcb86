"""Experiment ``bert-mlm`` (note D2): a small BERT learns a synthetic grammar by masked LM.

Data: sentences of ``paperlab.data.synthetic.corpus`` (``DET [ADJ] NOUN [PREP DET' PLACE]
VERB [ADV]``: determiner-noun and subject-verb number agreement across an attractor phrase,
one verb per species), tokenised word by word (HF ``tokenizers`` WordLevel). Held out: the
evaluation sentences never occur in training.

Model: ``BertForMaskedLM`` with d = 64, 2 layers, 4 heads, FFN 128, no dropout, weights
initialised N(0, 0.1) (see ``INIT``: BERT's 0.02 leaves this small model on a plateau of
seed-dependent length); AdamW
(lr 3e-3, linear warm-up, cosine decay), batch 64; masking by ``mask_tokens`` (p = 0.15,
80/10/10) drawn afresh every step with a seeded generator.

Measured: MLM accuracy on masked held-out tokens (4 independent maskings) overall and per
word role; the unigram baseline (always predict the most frequent training token); the
accuracy on masked verbs whose subject noun is visible (the verb is then determined by the
grammar: species and number, across the attractor); and the masking statistics of every
training batch against 15% selected and the 80/10/10 split (a random replacement hits
[MASK] or the original token with probability 1/V each, which the expected values include).

Claims (thresholds fixed before any run): (1) held-out accuracy exceeds the unigram baseline
by > 0.3 (quick); (2) masked verbs with a visible subject are predicted with accuracy > 0.95
(quick); (3) the selected fraction is within 4 binomial standard deviations of 0.15; (4) each
of the [MASK] / random / unchanged fractions is within 4 standard deviations of its
expectation.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import torch

from paperlab.data.synthetic.corpus import (
    DETERMINERS,
    PLACES,
    SPECIES,
    grammar_sentences,
    grammar_words,
    word_roles,
)
from paperlab.experiments.base import Claim, Context, Result, pyplot
from paperlab.language.bert import BertForMaskedLM, mask_tokens, mlm_loss, special_tokens_mask
from paperlab.language.tokenizer import (
    encode_batch,
    special_token_ids,
    token_id,
    word_level_tokenizer,
)
from paperlab.registry import export_experiment
from paperlab.training.schedules import warmup_cosine_factor

MAX_LEN = 12
LR, BATCH = 3e-3, 64
# N(0, 0.1) initial weights, not BERT's 0.02: at d = 64 the 0.02 start gives near-uniform
# attention and a loss plateau whose end varies with the seed (seed 2: verbs with a visible
# subject at 0.58 after 600 steps; seeds 0-4 with 0.1: 0.994-0.998).
INIT = 0.1
ROLES = ("noun", "verb", "det", "place", "prep", "adj", "adv")


class MaskStats:
    """Running counts of what ``mask_tokens`` did: eligible, selected, [MASK], same, other."""

    def __init__(self) -> None:
        self.counts = Counter()

    def add(self, ids: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor,
            special: torch.Tensor, mask_id: int) -> None:
        sel = labels != -100
        out, orig = masked[sel], ids[sel]
        self.counts.update(
            eligible=int((~special).sum()), selected=int(sel.sum()),
            mask=int((out == mask_id).sum()), same=int((out == orig).sum()),
            other=int(((out != mask_id) & (out != orig)).sum()),
        )  # fmt: skip

    def z_scores(self, p: float, vocab: int) -> dict[str, float]:
        """(count - n q) / sqrt(n q (1 - q)) for each statistic and its expectation q."""
        c = self.counts
        expected = {
            "selected": (c["eligible"], p),
            "mask": (c["selected"], 0.8 + 0.1 / vocab),
            "same": (c["selected"], 0.1 + 0.1 / vocab),
            "other": (c["selected"], 0.1 * (vocab - 2) / vocab),
        }
        return {k: (c[k] - n * q) / math.sqrt(n * q * (1 - q)) for k, (n, q) in expected.items()}


@export_experiment(
    "bert-mlm",
    note="D2 BERT",
    title="A small BERT learns a synthetic grammar by masked language modelling",
    tags=("language", "bert", "mlm"),
)
def bert_mlm(ctx: Context) -> Result:
    """Train MLM on the grammar; held-out accuracy vs the unigram baseline; masking stats."""
    steps = ctx.pick(smoke=20, quick=600, full=3000)
    batch = BATCH
    n_train = ctx.pick(smoke=2000, quick=20000, full=50000)
    n_eval = ctx.pick(smoke=200, quick=1000, full=2000)
    torch.manual_seed(ctx.seed)
    tok = word_level_tokenizer(grammar_words())
    vocab, mask_id, specials = tok.get_vocab_size(), token_id(tok, "[MASK]"), special_token_ids(tok)
    eval_text = grammar_sentences(n_eval, seed=ctx.seed * 7 + 1)
    train_text = grammar_sentences(n_train, seed=ctx.seed * 7 + 2, exclude=eval_text)
    ids_tr, am_tr = encode_batch(tok, train_text, MAX_LEN)
    ids_ev, am_ev = encode_batch(tok, eval_text, MAX_LEN)
    sp_tr, sp_ev = special_tokens_mask(ids_tr, specials), special_tokens_mask(ids_ev, specials)

    model = BertForMaskedLM(
        vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=16, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, initializer_range=INIT,
    )  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine_factor(s, steps, max(1, steps // 10))
    )
    g = ctx.generator(3)
    stats = MaskStats()
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    for _ in ctx.track(range(steps), label="train"):
        idx = torch.randint(len(train_text), (batch,), generator=g)
        x, am, sp = ids_tr[idx], am_tr[idx], sp_tr[idx]
        xm, labels = mask_tokens(x, sp, vocab, mask_token_id=mask_id, generator=g)
        stats.add(x, xm, labels, sp, mask_id)
        loss = mlm_loss(model(xm, am), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0

    # evaluation: 4 maskings of the held-out sentences
    words = {i: w for w, i in tok.get_vocab().items()}
    roles = word_roles()
    nouns = {i for i, w in words.items() if roles.get(w) == "noun"}
    counts = Counter(ids_tr[~sp_tr].tolist())
    unigram = counts.most_common(1)[0][0]
    hits, total = Counter(), Counter()
    base_hits = verb_vis_hits = verb_vis_total = 0
    model.eval()
    g_eval = ctx.generator(5)
    noun_ids = torch.tensor(sorted(nouns))
    with torch.no_grad():
        for _ in range(4):
            xm, labels = mask_tokens(ids_ev, sp_ev, vocab, mask_token_id=mask_id, generator=g_eval)
            pred = model(xm, am_ev).argmax(-1)
            sel = labels != -100
            subject_visible = ~(torch.isin(ids_ev, noun_ids) & sel).any(1, keepdim=True)
            for p, lab, vis in zip(pred[sel].tolist(), labels[sel].tolist(),
                                   subject_visible.expand_as(sel)[sel].tolist()):
                role = roles[words[lab]]
                total[role] += 1
                hits[role] += p == lab
                base_hits += lab == unigram
                if role == "verb" and vis:
                    verb_vis_total += 1
                    verb_vis_hits += p == lab
    n_sel = sum(total.values())
    acc = sum(hits.values()) / n_sel
    baseline = base_hits / n_sel
    by_role = {r: hits[r] / total[r] for r in ROLES if total[r]}
    verb_visible = verb_vis_hits / max(verb_vis_total, 1)
    z = stats.z_scores(0.15, vocab)
    c = stats.counts
    fractions = {
        "selected": c["selected"] / c["eligible"],
        "mask": c["mask"] / c["selected"],
        "random": c["other"] / c["selected"],
        "unchanged": c["same"] / c["selected"],
    }

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(losses, lw=0.8)
    ax1.set_xlabel("step")
    ax1.set_ylabel("MLM cross-entropy (masked tokens)")
    ax1.set_title(f"training loss ({sum(p.numel() for p in model.parameters()):,} parameters)")
    names = list(by_role) + ["all"]
    ax2.bar(names, [by_role[r] for r in by_role] + [acc], color="tab:blue", label="BERT")
    ax2.axhline(baseline, color="tab:red", ls="--", lw=1, label=f"unigram: {baseline:.3f}")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("held-out accuracy on masked tokens")
    ax2.set_title(f"verbs with visible subject: {verb_visible:.3f}")
    ax2.legend(fontsize=8)
    ctx.savefig(fig, "loss_and_accuracy")

    claims = [
        Claim.check("held-out MLM accuracy minus the unigram baseline", acc - baseline, ">", 0.3),
        Claim.check("held-out accuracy on masked verbs whose subject noun is visible "
                    "(agreement across the attractor + selection)", verb_visible, ">", 0.95),
        Claim.check("|z| of the selected fraction against p = 0.15 (binomial)",
                    abs(z["selected"]), "<", 4.0),
        Claim.check("largest |z| of the [MASK] / random / unchanged fractions against "
                    "80/10/10 (with the 1/V coincidences)",
                    max(abs(z[k]) for k in ("mask", "other", "same")), "<", 4.0),
    ]
    metrics = {
        "accuracy": acc,
        "unigram_baseline": baseline,
        "unigram_token": words[unigram],
        "accuracy_by_role": by_role,
        "verb_accuracy_subject_visible": verb_visible,
        "masking_fractions": fractions,
        "masking_z": z,
        "masking_counts": dict(c),
        "vocab_size": vocab,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "steps": steps,
        "train_sentences": n_train,
        "eval_sentences": n_eval,
        "train_seconds": train_s,
        "grammar": {"species": len(SPECIES), "determiners": sum(map(len, DETERMINERS.values())),
                    "places": len(PLACES)},
    }
    summary = (
        f"held-out MLM accuracy {acc:.3f} vs unigram {baseline:.3f}; verbs with visible subject "
        f"{verb_visible:.3f}; masking {fractions['selected']:.4f} selected, "
        f"{fractions['mask']:.3f}/{fractions['random']:.3f}/{fractions['unchanged']:.3f} "
        f"[MASK]/random/same ({train_s:.1f} s)"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
