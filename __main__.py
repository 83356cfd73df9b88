"""Composition root of the platform stack (project gke-inference).

`pulumi up -s dev` runs this file; so does `gke-inference plan --stack dev`.
"""

from gke_inference.program import platform_program

platform_program()
