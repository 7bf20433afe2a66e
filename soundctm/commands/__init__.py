"""Command-line entry points that need more than one layer below them (e.g. a Ray mapper from
`soundctm.distributed` and the trainers or metrics it runs). `soundctm.cli` dispatches to them."""
