"""Groups: the user's objects, and how a run's clusters get their names.

A run's clusters are numbers that change with every training; what the user names, merges,
labels, moves and exports are *groups*. A group has a name (unique in the library) and a
colour (the ``groups`` table). A run attaches names to its clusters (``cluster_names``, one
attachment per run): one name on several clusters is a merge, and those clusters are one
group.

**The group view of a run** (:class:`GroupView`, built by :func:`build_group_view`): every
image that is not ignored belongs to exactly one group:

* a labelled image (a label or a move) belongs to the group of its label, wherever the
  model put it (labels win);
* any other image belongs to the group its cluster is attached to, or, for an unnamed
  cluster, to that cluster's own unnamed group (key ``cluster:<n>``).

A group's probability for an image is the sum of the model's probabilities of the group's
clusters, so a merge reads as one probability. The window, ``crlc clusters`` and ``crlc
export`` all show this view.

**A name follows pictures, never a number.** When a run gets new assignments (train,
refine, stage 2, assign), :func:`attach_names` names its clusters from the images they
share with a *reference* view (the run the user was looking at; for a refine its parent):
every image of a new cluster has an origin, its label if it has one, else its group in the
reference view. A cluster takes a group's name when at least :data:`ATTACH_SHARE` of its
images whose origin is known came from that group (so at most one name, and a group split
over two clusters names both when each passes); clusters that match nothing stay unnamed.
:func:`check_groups` then records, per named group of the reference, how many of its
pictures landed under its name; a group that kept less than :data:`KEPT_SHARE` is flagged.

Modules: :mod:`.naming` (keys, default names, the attach and check rules), :mod:`.view`
(the group view of a run), :mod:`.store` (:class:`GroupStore`, the catalog's tables).
"""

from __future__ import annotations

from crlc_engine.results.groups.naming import (
    ATTACH_SHARE,
    KEPT_SHARE,
    NAMED_KEY,
    UNNAMED_KEY,
    GroupCheck,
    attach_names,
    check_groups,
    default_cluster_name,
    free_cluster_name,
    named_key,
    unnamed_key,
)
from crlc_engine.results.groups.store import GroupStore
from crlc_engine.results.groups.view import GroupSummary, GroupView, build_group_view

__all__ = [
    "ATTACH_SHARE",
    "KEPT_SHARE",
    "NAMED_KEY",
    "UNNAMED_KEY",
    "GroupCheck",
    "GroupStore",
    "GroupSummary",
    "GroupView",
    "attach_names",
    "build_group_view",
    "check_groups",
    "default_cluster_name",
    "free_cluster_name",
    "named_key",
    "unnamed_key",
]
