"""Backbones only: no diffusion math lives here (see soundctm.edm / soundctm.ctm)."""
