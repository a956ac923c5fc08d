"""Contrastive losses on embeddings: supervised contrastive (SupCon) and COCONUT's two (Cappellazzo et al., ACL
Findings 2024), on projected, L2-normalised embeddings.

The paper's equations could not be read here (``shared/reference/tera_coconut.md``, B0/B6: what is verified is
that NSPT is supervised contrastive learning anchored on the rehearsal samples, with *teacher* positives and
*student* negatives and a denominator over the whole batch; that MM aligns the pooled audio encoding with the
pooled token embedding of the transcript). The exact forms below are the choices made here:

**NSPT** (negative-student, positive-teacher). For every anchor ``i`` (a rehearsal sample of the batch, student
embedding ``s_i``) with positives ``P(i)`` -- the same-class samples of the batch, ``i`` itself included -- and
other-class samples ``N(i)``::

    l_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_i . t_p / tau) / den_i )
    den_i = sum_{p' in P(i)} exp(s_i . t_p' / tau) + sum_{n in N(i)} exp(s_i . s_n / tau)

``t`` being the previous task's frozen model's (the teacher's) embeddings of the same batch. The denominator runs
over the whole batch, each term taken from the teacher for a positive and from the student for a negative:
new-class samples enter as negatives only. The anchor's own teacher embedding ``t_i`` is a positive: a rehearsal
memory of 1-2% holds one to a few utterances per class, so a batch rarely holds a second sample of an anchor's
class, and a loss over other samples only would be zero almost always (it was, in every batch of the synthetic
FSC-6 streams at 1%). With ``self_positive=False`` ``P(i)`` leaves ``i`` out (and the denominator its ``i`` term);
with teacher = student that form *is* SupCon (Khosla et al. 2020, ``L_out``) restricted to those anchors. Anchors
without a positive are skipped; the loss is the mean over the remaining anchors (0 when there is none).

**MM** (multimodal). CLIP's symmetric InfoNCE between the pooled audio embedding ``a_i`` and the pooled text
embedding ``e_i`` of the same utterance's transcript: ``(CE(a e^T / tau, I) + CE(e a^T / tau, I)) / 2`` over the
batch (or over the items a mask selects, e.g. the current task's), computed by open_clip's ``ClipLoss`` at logit
scale ``1 / tau``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmseq.errors import InputError


def _check(name: str, x: Tensor, n: int | None = None) -> None:
    if x.dim() != 2 or (n is not None and x.shape[0] != n):
        raise InputError(f"{name} must be [B, D]{f' with B = {n}' if n is not None else ''}, got {tuple(x.shape)}")


def nspt_loss(student: Tensor, teacher: Tensor, labels: Tensor, anchors: Tensor, temperature: float = 0.1,
              self_positive: bool = True) -> Tensor:
    """NSPT on ``student`` / ``teacher`` embeddings ``[B, D]`` (normalised here), class ``labels [B]`` and the
    bool ``anchors [B]`` (the rehearsal samples); ``self_positive``: the anchor's own teacher embedding is one of
    its positives (see the module notes)."""
    b = student.shape[0]
    _check("student embeddings", student)
    _check("teacher embeddings", teacher, b)
    if labels.shape != (b,) or anchors.shape != (b,):
        raise InputError(f"labels and anchors must be [{b}], got {tuple(labels.shape)} and {tuple(anchors.shape)}")
    if temperature <= 0:
        raise InputError(f"temperature must be positive, got {temperature}")
    s = F.normalize(student, dim=1)
    t = F.normalize(teacher.detach(), dim=1)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=s.device)
    positive = same if self_positive else same & ~eye
    use = anchors.bool() & positive.any(dim=1)
    if not bool(use.any()):
        return s.sum() * 0.0
    to_teacher = s @ t.T / temperature
    to_student = s @ s.T / temperature
    logits = torch.where(positive, to_teacher, to_student)
    if not self_positive:
        logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(dim=1)) / positive.sum(dim=1).clamp(min=1)
    return per_anchor[use].mean()


def supcon_loss(embeddings: Tensor, labels: Tensor, anchors: Tensor | None = None, temperature: float = 0.1
                ) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, ``L_out``) over the ``anchors`` (all by default)."""
    anchors = torch.ones_like(labels, dtype=torch.bool) if anchors is None else anchors
    return nspt_loss(embeddings, embeddings, labels, anchors, temperature, self_positive=False)


def multimodal_contrastive_loss(audio: Tensor, text: Tensor, temperature: float = 0.1,
                                mask: Tensor | None = None) -> Tensor:
    """MM: symmetric InfoNCE between paired ``audio`` and ``text`` embeddings ``[B, D]`` (normalised here), over
    the items ``mask [B]`` selects (all by default; 0 for fewer than two)."""
    _check("audio embeddings", audio)
    _check("text embeddings", text, audio.shape[0])
    if temperature <= 0:
        raise InputError(f"temperature must be positive, got {temperature}")
    if mask is not None:
        audio, text = audio[mask.bool()], text[mask.bool()]
    if audio.shape[0] < 2:
        return audio.sum() * 0.0 + text.sum() * 0.0
    from open_clip.loss import ClipLoss  # CLIP's loss as open_clip computes it (the LiMBeR encoder uses it too)

    scale = torch.tensor(1.0 / temperature, device=audio.device)
    return ClipLoss()(F.normalize(audio, dim=1), F.normalize(text, dim=1), scale)
