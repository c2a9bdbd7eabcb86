"""Experiment ``bert-mlm`` (note D2): a small BERT learns a synthetic grammar by masked LM.

Data: sentences of ``paperlab.data.synthetic.corpus`` (``DET [ADJ] NOUN [PREP DET' PLACE]
VERB [ADV]``: determiner-noun and subject-verb number agreement across an attractor phrase,
one verb per species), tokenised word by word (HF ``tokenizers`` WordLevel). Held out: the
evaluation sentences never occur in training.

Model: ``BertForMaskedLM`` with d = 64, 2 layers, 4 heads, FFN 128, no dropout, weights
initialised N(0, 0.1) (see ``INIT``: BERT's 0.02 leaves this small model on a plateau of
seed-dependent length); AdamW (lr 5e-3 from a pilot sweep over {3e-3, 5e-3}, see ``LR``;
linear warm-up, cosine decay), batch 64, 400 steps per seed at quick; masking by
``mask_tokens`` (p = 0.15, 80/10/10) drawn afresh every step with a seeded generator.

Measured, for each of 3 seeds (``ctx.seeds(3)``: the grammar's sentences, the held-out split,
the initial weights and the maskings all change): MLM accuracy on masked held-out tokens (4
independent maskings) overall and per word role; the unigram baseline (always predict the
most frequent training token); the accuracy on masked verbs whose subject noun is visible
(the verb is then determined by the grammar: species and number, across the attractor) and,
as its control, on masked verbs whose subject is masked too (the grammar no longer fixes the
verb); and the masking statistics of every training batch against 15% selected and the
80/10/10 split (a random replacement hits [MASK] or the original token with probability 1/V
each, which the expected values include).

Claims (worst seed decides; thresholds fixed before any run, then checked on a pilot on
seeds 100-109, lr 5e-3): (1) held-out accuracy exceeds the unigram baseline by > 0.3 (pilot
at 300 steps 0.44-0.49; control: the baseline, ~0.05); (2) masked verbs with a visible
subject are predicted with accuracy > 0.95 (pilot at 300 steps 0.987-0.998 on seeds 100-109,
at 400 steps 0.994-0.998 on seeds 104-109; control: the same model with the subject masked,
0.18-0.40). History, for honesty: the first recorded run used 300 steps and failed claim (2)
on seed 2 alone (0.948; seeds 0, 1, 3: 0.987, 0.996, 0.996), a seed whose plateau lasts
longer; the training budget, not the threshold, was then raised to 400 steps; (3) the
selected fraction is within 4 binomial standard deviations of 0.15; (4) each of the [MASK] /
random / unchanged fractions is within 4 standard deviations of its expectation (pilot
|z| <= 2.91; a broken 80/10/10
split, say 80/20/0, is off by about 50 standard deviations).
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
# lr from a pilot on seeds 100-103 at 300 steps (held-out accuracy of verbs with a visible
# subject): 3e-3 gave 0.996 / 0.986 / 0.992 / 0.979, 5e-3 gave 0.998 / 0.996 / 0.987 / 0.998
LR, BATCH = 5e-3, 64
# steps per seed at quick. 200 left pilot seed 101 on the plateau (0.61). 300 passed on pilot
# seeds 100-109 (>= 0.987) but the first recorded run failed on seed 2 (0.948); 400 steps,
# piloted on seeds 104-109 (0.994-0.998), is the budget now (see the module docstring).
QUICK_STEPS = 400
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


def train_and_evaluate(seed: int, steps: int, n_train: int, n_eval: int) -> dict:
    """Train one BERT on the grammar with ``seed``; held-out accuracies and masking stats."""
    torch.manual_seed(seed)
    seeded = Context(seed=seed)
    tok = word_level_tokenizer(grammar_words())
    vocab, mask_id, specials = tok.get_vocab_size(), token_id(tok, "[MASK]"), special_token_ids(tok)
    eval_text = grammar_sentences(n_eval, seed=seed * 7 + 1)
    train_text = grammar_sentences(n_train, seed=seed * 7 + 2, exclude=eval_text)
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
    g = seeded.generator(3)
    stats = MaskStats()
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(train_text), (BATCH,), generator=g)
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
    base_hits = 0
    verb = {True: [0, 0], False: [0, 0]}  # subject visible -> [hits, total]
    model.eval()
    g_eval = seeded.generator(5)
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
                if role == "verb":
                    verb[vis][0] += p == lab
                    verb[vis][1] += 1
    n_sel = sum(total.values())
    c = stats.counts
    return {
        "accuracy": sum(hits.values()) / n_sel,
        "baseline": base_hits / n_sel,
        "unigram": words[unigram],
        "by_role": {r: hits[r] / total[r] for r in ROLES if total[r]},
        "verb_visible": verb[True][0] / max(verb[True][1], 1),
        "verb_hidden": verb[False][0] / max(verb[False][1], 1),
        "verb_counts": {"visible": verb[True][1], "hidden": verb[False][1]},
        "z": stats.z_scores(0.15, vocab),
        "counts": dict(c),
        "fractions": {
            "selected": c["selected"] / c["eligible"],
            "mask": c["mask"] / c["selected"],
            "random": c["other"] / c["selected"],
            "unchanged": c["same"] / c["selected"],
        },
        "losses": losses,
        "train_seconds": train_s,
        "vocab": vocab,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


@export_experiment(
    "bert-mlm",
    note="D2 BERT",
    title="A small BERT learns a synthetic grammar by masked language modelling",
    tags=("language", "bert", "mlm"),
)
def bert_mlm(ctx: Context) -> Result:
    """Train MLM on the grammar on 3 seeds; held-out accuracy vs controls; masking stats."""
    steps = ctx.pick(smoke=20, quick=QUICK_STEPS, full=3000)
    n_train = ctx.pick(smoke=2000, quick=20000, full=50000)
    n_eval = ctx.pick(smoke=200, quick=1000, full=2000)
    seeds = ctx.seeds(3)
    runs = [train_and_evaluate(seed, steps, n_train, n_eval)
            for seed in ctx.track(seeds, label="seeds")]  # fmt: skip
    first = runs[0]
    acc, baseline, by_role = first["accuracy"], first["baseline"], first["by_role"]
    verb_visible, fractions = first["verb_visible"], first["fractions"]
    gap = [r["accuracy"] - r["baseline"] for r in runs]
    vis = [r["verb_visible"] for r in runs]
    hid = [r["verb_hidden"] for r in runs]
    z_sel = [abs(r["z"]["selected"]) for r in runs]
    z_split = [max(abs(r["z"][k]) for k in ("mask", "other", "same")) for r in runs]

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for seed, r in zip(seeds, runs, strict=True):
        ax1.plot(r["losses"], lw=0.8, label=f"seed {seed}")
    ax1.set_xlabel("step")
    ax1.set_ylabel("MLM cross-entropy (masked tokens)")
    ax1.set_title(f"training loss ({first['parameters']:,} parameters)")
    ax1.legend(fontsize=8)
    names = list(by_role) + ["all"]
    ax2.bar(names, [by_role[r] for r in by_role] + [acc], color="tab:blue", label="BERT")
    ax2.axhline(baseline, color="tab:red", ls="--", lw=1, label=f"unigram: {baseline:.3f}")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("held-out accuracy on masked tokens")
    ax2.set_title(f"seed {seeds[0]}; verbs, subject visible {verb_visible:.3f} / masked "
                  f"{first['verb_hidden']:.3f}")  # fmt: skip
    ax2.legend(fontsize=8)
    ctx.savefig(fig, "loss_and_accuracy")

    r3 = lambda v: [round(x, 4) for x in v]  # noqa: E731
    claims = [
        Claim.over_seeds(
            "held-out MLM accuracy minus the unigram baseline > 0.3 (control: the unigram "
            "baseline's own accuracy)",
            r3(gap), ">", 0.3, control=r3([r["baseline"] for r in runs]),
        ),
        Claim.over_seeds(
            "held-out accuracy on masked verbs whose subject noun is visible > 0.95 "
            "(agreement across the attractor + selection; control: the same model on verbs "
            "whose subject is masked too)",
            r3(vis), ">", 0.95, control=r3(hid),
        ),
        Claim.over_seeds(
            "|z| of the selected fraction against p = 0.15 (binomial) < 4",
            r3(z_sel), "<", 4.0,
        ),
        Claim.over_seeds(
            "largest |z| of the [MASK] / random / unchanged fractions against "
            "80/10/10 (with the 1/V coincidences) < 4",
            r3(z_split), "<", 4.0,
        ),
    ]  # fmt: skip
    metrics = {
        "seeds": seeds,
        "accuracy": acc,
        "unigram_baseline": baseline,
        "unigram_token": first["unigram"],
        "accuracy_by_seed": [r["accuracy"] for r in runs],
        "unigram_baseline_by_seed": [r["baseline"] for r in runs],
        "accuracy_by_role": by_role,
        "verb_accuracy_subject_visible": verb_visible,
        "verb_accuracy_subject_visible_by_seed": vis,
        "verb_accuracy_subject_masked_by_seed": hid,
        "verb_counts_by_seed": [r["verb_counts"] for r in runs],
        "masking_fractions": fractions,
        "masking_z_by_seed": [r["z"] for r in runs],
        "masking_counts_by_seed": [r["counts"] for r in runs],
        "vocab_size": first["vocab"],
        "final_loss_by_seed": [sum(r["losses"][-20:]) / len(r["losses"][-20:]) for r in runs],
        "steps": steps,
        "train_sentences": n_train,
        "eval_sentences": n_eval,
        "train_seconds_by_seed": [r["train_seconds"] for r in runs],
        "grammar": {"species": len(SPECIES), "determiners": sum(map(len, DETERMINERS.values())),
                    "places": len(PLACES)},
    }  # fmt: skip
    summary = (
        f"seeds {seeds}: held-out MLM accuracy {min(r['accuracy'] for r in runs):.3f} at worst "
        f"vs unigram {baseline:.3f}; verbs with visible subject {min(vis):.3f} at worst vs "
        f"{max(hid):.3f} with the subject masked; masking {fractions['selected']:.4f} "
        f"selected, {fractions['mask']:.3f}/{fractions['random']:.3f}/"
        f"{fractions['unchanged']:.3f} [MASK]/random/same (seed {seeds[0]})"
    )
    return Result(summary=summary, metrics=metrics, claims=claims)
