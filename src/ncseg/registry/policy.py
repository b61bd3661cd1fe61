"""Which alias a registered version earns, on merit alone: plain values in, a verdict and its reason out. No MLflow
here (registry.promote reads the registry, calls these and moves the aliases), so the rule is tested without a store.

- Only a version that passes the merit gate can become `champion`: it must beat each classical baseline on the same
  folds (mean fold-paired Jaccard gain > 0) and reach `register.min_jaccard` where set. This holds for the first
  version too.
- Past the gate, `champion` moves only when the candidate's CV score beats the champion's by more than
  `register.margin` and the run-to-run noise, or when the champion speaks another interface (input schema) than the
  current code, was measured on other data, or was ranked by another score. Otherwise the candidate becomes
  `challenger`.
- The score is declared (`register.score`): the Jaccard (a K-class study: the mean over its foreground classes), or
  one class's Jaccard (the Pt particles of a catalysis study). The gate's paired gains, the ranking and the
  comparison with the champion all use it, and every reason names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ncseg.records import Summary, score_label

CHAMPION, CHALLENGER, REJECTED = "champion", "challenger", "rejected"


@dataclass(frozen=True)
class Candidate:
    """What the promotion rule weighs: the new version's CV score, how much that score moves between runs of the
    same configuration (CVSummary.noise), and the data it was measured on."""

    architecture: str
    cv_jaccard: float  # its CV `score`
    noise: float
    data_md5: str
    score: str | None = None  # register.score: None, the headline Jaccard; a class name, that class's Jaccard


def champion_score(tags: Mapping[str, str]) -> float:
    """A version's CV score as the registry compares it (its `cv_score_mean` tag); a version registered before
    register.score existed was compared on its Jaccard."""
    return float(tags.get("cv_score_mean", tags.get("cv_jaccard_mean", "nan")))


def merit_gate(model: str, summary: Summary, min_jaccard: float | None) -> str | None:
    """Why `model` must not become champion whatever the registry holds, or None when it may.

    The bar is the classical baseline on the same folds, paired fold by fold: a network that does not beat
    what an ImageJ user gets with Otsu is worse than no network. Without a baseline in the study, only
    `register.min_jaccard` can vouch for it; with neither, nothing does.
    """
    score, label = summary.score, score_label(summary.score)
    mean = summary.models[model].score_mean(score)
    if min_jaccard is not None and mean < min_jaccard:
        return f"CV {label} {mean:.4f} is below register.min_jaccard {min_jaccard}"
    gains = summary.baseline_gains(model)  # paired on the summary's score
    losing = [g for g in gains if g.gain_mean <= 0]
    if losing:
        return "; ".join(
            f"does not beat the classical baseline {g.baseline} on the same folds ({label} "
            f"{mean:.4f} vs {summary.models[g.baseline].score_mean(score):.4f}, paired gain "
            f"{g.gain_mean:+.4f}, better on {g.folds_better} of {g.folds} folds)"
            for g in losing
        )
    if not gains and min_jaccard is None:
        return "no classical baseline in the study and no register.min_jaccard: nothing shows it beats chance"
    return None


def verdict(
    champion_tags: Mapping[str, str] | None,
    champion_version: str | None,
    candidate: Candidate,
    margin: float,
    interface: str,
) -> tuple[str, str]:
    """Champion or challenger for a candidate that passed the merit gate, with the reason.

    `champion_tags` and `champion_version` describe the version holding `champion` (None when none does);
    `interface` is the input schema today's code serves (registry.promote.interface)."""
    if champion_tags is None:
        return CHAMPION, "first version to pass the gate (beats the classical baseline): no champion yet"
    if champion_tags.get("interface") != interface:
        return CHAMPION, f"champion v{champion_version} takes another input than today's clients send"
    if champion_tags.get("data_md5") != candidate.data_md5:
        return CHAMPION, (
            f"champion v{champion_version} was measured on other data (data.dvc md5 "
            f"{champion_tags.get('data_md5', '?')[:8]}, now {candidate.data_md5[:8]}): its score is stale"
        )
    if champion_tags.get("cv_score", "") != (candidate.score or ""):
        return CHAMPION, (
            f"champion v{champion_version} was ranked by {score_label(champion_tags.get('cv_score') or None)}, the "
            f"study now by {score_label(candidate.score)} (register.score): its score is not comparable"
        )
    best = champion_score(champion_tags)
    noise = max(candidate.noise, float(champion_tags.get("cv_noise", "0")))
    bar = max(margin, noise)
    delta = candidate.cv_jaccard - best
    label = score_label(candidate.score)
    gain = f"CV {label} {candidate.cv_jaccard:.4f} vs champion v{champion_version} {best:.4f} ({delta:+.4f})"
    if candidate.cv_jaccard > best + bar:
        return CHAMPION, f"{gain}: beyond the run-to-run noise {noise:.4f} and the margin {margin}"
    return CHALLENGER, f"{gain}: not beyond the run-to-run noise {noise:.4f} / margin {margin}"
