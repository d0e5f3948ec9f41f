"""Evaluation: the one-shot evaluator (standard and extended protocol), reports, the template baseline."""

from .evaluator import OneShotEvaluator
from .template_baseline import TemplateMatcher

__all__ = ["OneShotEvaluator", "TemplateMatcher"]
