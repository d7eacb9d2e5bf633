"""Grouping d-vectors into speakers: average-linkage agglomerative clustering on cosine distance.

Why agglomerative with a threshold: GE2E d-vectors of one speaker sit close together on the unit
sphere (``../shared/MODELS.md``: same-speaker clips 0.83-0.95 cosine, different speakers at most
0.78), so "merge while the average distance between two groups is below a threshold" finds the
number of speakers when the caller does not know it, and "merge until ``k`` groups are left" when
it does. Average linkage (UPGMA) is reducible, so the nearest-neighbour chain algorithm builds the
whole dendrogram in O(n^2) time with one n x n matrix, and every cut (threshold or count) is
then read from the same sorted merge list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: cosine *distance* (1 - similarity) below which two groups of windows are one speaker; from
#: ``bench/diarization_eval.py`` on LibriSpeech conversations (see that file's docstring)
DEFAULT_THRESHOLD = 0.35


@dataclass(frozen=True)
class Merge:
    """One step of the dendrogram: groups ``a`` and ``b`` joined at mean distance ``distance``."""

    a: int
    b: int
    distance: float


def _cosine_distances(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.maximum(norms, 1e-12)
    distances = 1.0 - (unit @ unit.T).astype(np.float64)
    np.clip(distances, 0.0, 2.0, out=distances)
    return distances


def average_linkage(embeddings: np.ndarray) -> list[Merge]:
    """The ``n - 1`` merges of UPGMA on cosine distance, sorted by distance.

    Items are numbered ``0..n-1``; a merge keeps the smaller of its two ids as the joined group's
    id, so applying merges in order with a union-find reproduces every level of the tree.
    """
    n = embeddings.shape[0]
    if n < 2:
        return []
    dist = _cosine_distances(embeddings)
    np.fill_diagonal(dist, np.inf)
    size = np.ones(n)
    active = np.ones(n, dtype=bool)
    merges: list[Merge] = []
    chain: list[int] = []
    while len(merges) < n - 1:
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        a = chain[-1]
        row = np.where(active, dist[a], np.inf)
        row[a] = np.inf
        b = int(np.argmin(row))
        # prefer the previous link on ties: this is what makes the chain terminate
        if len(chain) > 1 and row[chain[-2]] <= row[b]:
            b = chain[-2]
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            keep, drop = min(a, b), max(a, b)
            merges.append(Merge(keep, drop, float(dist[a, b])))
            # Lance-Williams update for average linkage
            joined = (size[keep] * dist[keep] + size[drop] * dist[drop]) / (size[keep] + size[drop])
            dist[keep, :] = joined
            dist[:, keep] = joined
            dist[keep, keep] = np.inf
            size[keep] += size[drop]
            active[drop] = False
            dist[drop, :] = np.inf
            dist[:, drop] = np.inf
        else:
            chain.append(b)
    merges.sort(key=lambda m: m.distance)
    return merges


def _labels_after(n: int, merges: list[Merge]) -> np.ndarray:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for merge in merges:
        ra, rb = find(merge.a), find(merge.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int64)


def cluster_speakers(
    embeddings: np.ndarray,
    *,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 8,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """A speaker label ``0..k-1`` for each row of ``embeddings`` ``(n, d)``.

    With ``num_speakers`` the tree is cut at exactly that many groups (fewer if there are fewer
    items). Otherwise it is cut where the average cosine distance reaches ``threshold``, and the
    count is then clamped into ``[min_speakers, max_speakers]``. Labels are numbered in order of
    first appearance, so the first item is always speaker 0.
    """
    if min_speakers < 1 or max_speakers < min_speakers:
        raise ValueError(
            f"need 1 <= min_speakers <= max_speakers, got {min_speakers}, {max_speakers}"
        )
    if num_speakers is not None and num_speakers < 1:
        raise ValueError(f"num_speakers must be at least 1, got {num_speakers}")
    n = embeddings.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    merges = average_linkage(embeddings)
    if num_speakers is not None:
        k = num_speakers
    else:
        k = n - sum(1 for m in merges if m.distance < threshold)
        k = min(max(k, min_speakers), max_speakers)
    k = min(max(k, 1), n)
    labels = _labels_after(n, merges[: n - k])
    # renumber by first appearance
    order = {int(label): rank for rank, label in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[int(label)] for label in labels], dtype=np.int64)
