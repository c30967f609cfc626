"""Distillation: soft labels from a teacher model for photos without masks.

:class:`OnnxTeacher` runs any ONNX saliency model under the protocol of its JSON card;
:func:`label_images` writes its maps once into a label folder whose ``labels.txt`` the trainer reads
like any list file (``csnet label``, or ``csnet train --teacher T.onnx --unlabeled DIR``).
"""
from csnet.distill.labels import LABELS_FILE, LabelReport, label_images
from csnet.distill.teacher import OnnxTeacher, TeacherError, TeacherProtocol

__all__ = ["LABELS_FILE", "LabelReport", "OnnxTeacher", "TeacherError", "TeacherProtocol", "label_images"]
