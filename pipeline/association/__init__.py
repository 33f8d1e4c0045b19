"""Cross-camera association: tracklet embeddings -> global identities.

``stage.IdentityStage`` is the one entry point the pipeline uses (tracklets -> observations -> ids);
``online`` assigns as tracklets finish, ``offline`` is the final global pass of file runs, ``scene_metric``
learns an appearance metric from the run itself, ``overlap`` learns where cameras share a view, and
``constraints`` holds the rules no assignment may break.
"""

from pipeline.association.offline import refine_identities
from pipeline.association.online import OnlineAssociator
from pipeline.association.records import Assignment, Observation
from pipeline.association.stage import Embedded, IdentityStage, clip_mode

__all__ = ["IdentityStage", "Embedded", "clip_mode", "OnlineAssociator", "refine_identities", "Observation",
           "Assignment"]
