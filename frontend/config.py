"""Global settings, Theano-style: ``sympile.config.floatX`` is the dtype of unprefixed constructors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    floatX: str = "float64"  # noqa: N815 - Theano's name


config = Config()
