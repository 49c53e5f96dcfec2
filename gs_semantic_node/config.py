"""One config dataclass per stage. Field names are the ROS parameter names (`<stage>.<field>`),
and the same YAML file (ROS params format) loads into both the node and the core.

The code defaults are the robot's (SAM + CLIP, real camera topics); `Config.preset("oracle_bench")`
is what the simulator benchmarks and the demo run (oracle perception, the query bar calibrated for
the MiniLM text proxy; config/tabletop_demo.yaml carries the same values). Every value is checked
against its field's type in one place (`coerce`): choices are `Literal`s, a wrong one is a
ConfigError naming the parameter and what it may be.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

import yaml

Backend = Literal["auto", "gsplat", "torch"]
CapPolicy = Literal["evict", "merge"]
Masks = Literal["sam", "oracle", "none"]  # none: geometry only, no objects
EmbedderKind = Literal["clip", "text_proxy"]
OraclePreset = Literal["clean", "realistic", "harsh"]
SamModel = Literal["vit_b", "vit_l", "vit_h", "vit_t"]  # vit_t: the mobile_sam package
SamPrecision = Literal["auto", "fp32", "bf16"]
SamAttention = Literal["sdpa", "stock"]
RgbTransport = Literal["raw", "compressed"]
DepthTransport = Literal["raw", "compressedDepth"]
PoseType = Literal["pose", "odometry", "transform"]
DepthUnit = Literal["auto", "mm", "m"]


class ConfigError(ValueError):
    """A parameter with a value its field does not take."""


DEFAULT_VOCABULARY = [
    "mug",
    "cup",
    "bowl",
    "plate",
    "bottle",
    "wine bottle",
    "ketchup bottle",
    "juice carton",
    "milk carton",
    "can",
    "box",
    "butter",
    "popcorn",
    "book",
    "frying pan",
    "pot",
    "banana",
    "apple",
    "orange",
    "teddy bear",
    "toy duck",
    "tray",
    "keyboard",
    "laptop",
    "phone",
    "remote control",
    "scissors",
    "spoon",
    "fork",
    "knife",
    "vase",
    "plant",
    "towel",
    "sponge",
    "table",
    "floor",
    "wall",
]
STUFF_CLASSES = ["table", "floor", "wall"]
CAP_POLICIES = get_args(CapPolicy)
POSE_TYPES = {
    "pose": "geometry_msgs/msg/PoseStamped",
    "odometry": "nav_msgs/msg/Odometry",
    "transform": "geometry_msgs/msg/TransformStamped",
}  # NodeConfig.pose_type


@dataclass
class MapperConfig:
    backend: Backend = "auto"
    device: str = "auto"  # auto | cpu | cuda[:N]
    width: int = 160  # working resolution (frames are resampled to it); 0 = input size
    height: int = 120
    max_gaussians: int = 300_000
    # Over the cap, "evict" drops the least opaque Gaussians; "merge" first drops only faint ones
    # (< cap_evict_opacity) and, if the cap still binds, coarsens the map to cap_target x the cap
    # (Gaussians of one object sharing a voxel become one, mapping/compaction.py; later seeds come
    # at that voxel size). Eviction keeps more detail under a mild cap; merging keeps the surface
    # covered when the map outgrows the cap several times (bench/RESULTS.md, "Under a Gaussian cap").
    cap_policy: CapPolicy = "evict"
    cap_target: float = 0.8
    cap_evict_opacity: float = 0.3
    feature_dim: int = 16  # one of gsplat's compiled channel counts
    keyframe_translation: float = 0.05  # m
    keyframe_rotation_deg: float = 5.0
    min_depth: float = 0.1
    max_depth: float = 6.0
    seed_stride: int = 2  # seed one Gaussian per stride x stride pixels
    # ... and per seed_stride_front^2 where surface stands in front of mapped surface: an object put down,
    # or a small one first told apart from the table, reaches min_object_gaussians from its first view
    seed_stride_front: int = 1
    seed_alpha: float = 0.5  # seed where the map's silhouette is below this
    seed_depth_error: float = 0.05  # ... or where observed depth is closer by this fraction
    # ... or closer than the map's nearest surface around the pixel by seed_depth_margin (m, 0: off) + 3 x
    # the sensor's noise (depth_noise): 5 % of a metre lets a small object stand on the table (put down
    # there, or never seen apart from it) unseeded, drawn by the table's Gaussians. The nearest rendered
    # depth of the 3x3 pixels, not the pixel's: at a rim the render blends an object with what lies
    # behind it, and seeding there doubled objects (bench/RESULTS.md, "Semantic quality beyond the primitives")
    seed_depth_margin: float = 0.015
    # ... and, up to this many pixels on, what continues such surface (depth within seed_depth_margin + noise
    # of it) in front by the noise alone of all the map draws within two pixels: the foot of an object put
    # down (Mapper._continued). Off (0) by default: it lost on the libero scenes (bench/RESULTS.md, "Scene changes")
    seed_grow_steps: int = 0
    depth_noise: float = 0.0025  # the depth sensor's noise: its std per m of depth squared
    # Free space: a Gaussian that views see through (the observed depth clearly behind it) gathers
    # evidence of being gone and is removed after free_space_views such views (Mapper.carve); one seen
    # where it is loses its evidence. "Clearly": by free_space_margin + 3 x depth_noise x depth^2, behind
    # even the nearest depth of its 3x3 pixels.
    free_space_carving: bool = True
    free_space_margin: float = 0.02  # m
    free_space_views: int = 2
    # Surface seeded in front of mapped surface counts as appeared (semantics.added_share) only where one
    # of the last appeared_history keyframes saw through its place (by seed_depth_margin + 3 x depth_noise
    # x depth^2): a side first seen, or an object first looked at, was not put there. 0: never appeared.
    appeared_history: int = 64
    seed_surfels: bool = True  # seed flat discs in the depth map's tangent plane (Mapper._surfels)
    surfel_thickness: float = 0.2  # disc thickness / in-plane scale
    surfel_min_cos: float = 0.25  # caps the stretch along the tilt at 4x the pixel footprint
    iters_per_keyframe: int = 8
    window_recent: int = 2
    window_random: int = 2
    # The rendered (expected) depth is biased towards the nearer centres on oblique surfaces, so its
    # loss alone sank the table under its true top and shrank round objects; the centre term
    # holds centres on the observed surface (`bench mapping`, bench/RESULTS.md).
    lambda_depth: float = 0.2
    lambda_dssim: float = 0.0  # photometric loss (1 - l) L1 + l D-SSIM (3DGS: 0.2)
    # an affine colour response per keyframe (auto exposure, white balance), optimised with the map; the
    # first keyframe anchors the colours, a view between keyframes takes its instant's (Mapper.exposure_at)
    exposure_compensation: bool = False
    lr_exposure: float = 1e-3
    depth_noise_weighting: bool = False  # depth loss weighted by the sensor's noise (~ depth^2), none at edges
    # a small rigid correction per keyframe pose, optimised with the map (the first keyframe anchors
    # the frame): odometry / motion-capture poses are off by millimetres and tenths of a degree
    pose_refinement: bool = False
    # Frame-to-model tracking (mapping.tracking): before a keyframe is mapped its pose is aligned to
    # the map's Gaussian centres (point-to-plane ICP); a correction over these bounds is refused
    track: bool = True
    track_iters: int = 6
    track_max_residual: float = 0.02  # m; points farther off the map's surface moved or are new
    track_max_translation: float = 0.03  # m
    track_max_rotation_deg: float = 3.0
    # m; how far an alignment to the map is off on its own. The given and the aligned pose are fused by
    # their noise (mapping.tracking.fuse_weight): exact poses keep theirs. 0 takes every correction whole
    track_map_sigma: float = 0.005
    # ... and then to the map's render (mapping.direct: colour and depth residuals, Gauss-Newton coarse to
    # fine). It makes keyframes agree with each other where the given poses are off by about a pixel, but
    # it inherits the render's own slight bias, so it is on where poses are that far off (kinect_v1.yaml)
    track_direct: bool = False
    track_direct_iters: int = 8  # per resolution
    lr_pose: float = 5e-4  # rad and m per step
    lambda_center_depth: float = 2.0  # pull centres onto the observed depth (Mapper.center_depth_loss)
    center_depth_band: float = 0.03  # m; centres farther from the observed depth are occluded or elsewhere
    prune_opacity: float = 0.02
    prune_every: int = 5  # keyframes
    max_scale: float = 0.1  # m; larger Gaussians are split (or pruned, split_large=False)
    # Splitting keeps the surface a big Gaussian covered (far, grazing floor at low resolution);
    # pruning it left holes the next keyframe reseeded and the next prune cut again (bench/RESULTS.md).
    split_large: bool = True
    prune_scale: float = 0.4  # m; runaway Gaussians past this are pruned, not split
    # Adam step sizes. Means move slowly (3DGS: 1.6e-4 x scene radius): a faster mean lets the
    # photometric loss sharpen the image by sinking Gaussians behind the surface instead of
    # shrinking them, which skews every box fitted to them (bench/RESULTS.md, mapping fidelity).
    lr_means: float = 1.5e-4
    lr_scales: float = 2e-2


@dataclass
class PerceptionConfig:
    masks: Masks = "sam"
    embedder: EmbedderKind = "clip"
    device: str = "auto"
    oracle_preset: OraclePreset = "realistic"
    oracle_seed: int = 0
    gt_path: str = ""  # simulator gt.json (oracle + text proxy need its descriptions)
    text_proxy_confusion: float = 0.05
    sam_model_type: SamModel = "vit_h"
    sam_checkpoint: str = ""
    sam_points_per_side: int = 16
    sam_pred_iou_thresh: float = 0.8
    sam_stability_thresh: float = 0.9
    sam_nms_iou: float = 0.7
    sam_map_guided: bool = True
    sam_precision: SamPrecision = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    sam_attention: SamAttention = "sdpa"  # sdpa: fused kernel (perception/sam_attention.py)
    clip_model: str = "ViT-B-16"
    clip_pretrained: str = ""  # local checkpoint path or open_clip tag
    clip_scales: list = field(default_factory=lambda: [1.0, 1.5])
    min_mask_pixels: int = 20


@dataclass
class SemanticsConfig:
    assoc_overlap: float = 0.3  # min share of a mask's weight on an object to join it
    assoc_min_similarity: float = 0.4  # ... unless its embedding clearly disagrees (cosine below)
    assoc_whole_coverage: float = 0.5  # a mask covering this share of a known object holds it "whole"
    assoc_misread_share: float = 0.5  # ... and lying this much on it, yet disagreeing: the object misread
    ambiguous_share: float = 0.15  # a mask holding most of >= 2 objects (each this share of it) votes for none
    # masks of one view overlapping less than this (of the smaller) are different things: one never joins a
    # record the other founded in that view (0: off)
    same_view_overlap: float = 0.5
    # views (largest masks) kept per object; query view evidence needs two that agree among them
    top_k_views: int = 10
    vocabulary: list = field(default_factory=lambda: list(DEFAULT_VOCABULARY))
    stuff_classes: list = field(default_factory=lambda: list(STUFF_CLASSES))
    label_temperature: float = 0.03
    background_prior: float = 0.02  # vote share a Gaussian needs before it leaves "background"
    # a stuff object's (table, floor) votes count this much against a thing's on one Gaussian: a surface's
    # mask often covers what stands on it (SAM's whole-surface level, or a small object merged into it)
    stuff_vote_weight: float = 0.5
    smooth_k: int = 8
    smooth_iters: int = 2
    smooth_color_scale: float = 0.05  # neighbours' votes weigh exp(-|rgb difference|^2 / this)
    smooth_flip_ratio: float = 2.0  # a Gaussian flips when its neighbours' majority outweighs its own id this much
    min_object_gaussians: int = 15
    # masks (views) an object needs before it is reported; one where added_share of its Gaussians appeared
    # where earlier views saw free space (an object put down)
    min_object_masks: int = 2
    split_eps: float = 0.04  # m: objects whose Gaussians fall apart at this gap are split
    split_scale_factor: float = 4.0  # ... the gap is never below this many median Gaussian scales
    split_min_samples: int = 3  # DBSCAN core points of a part
    feature_iters: int = 3  # contrastive instance-feature steps per keyframe (0 = off)
    feature_pixels: int = 1024  # pixels sampled per step
    feature_temperature: float = 0.1
    merge_feature_similarity: float = 0.5  # touching objects merge only if their instance features agree
    merge_similarity: float = 0.75  # objects sharing a boundary and this similar are merged
    merge_vote_cosine: float = 0.3  # things whose vote columns are this alike merge (>1: never)
    merge_touch_fraction: float = 0.2  # touching = this share of the smaller's Gaussians within split_eps / 2
    box_min_opacity: float = 0.1
    box_outlier_std: float = 4.0
    box_axis_tolerance: float = 0.2  # footprint turned to the principal axis if it costs <= this extra area
    # box sides grow by up to box_grow_sigma Gaussian scales where the surface curves (centres lie inside it),
    # by none where it is flat: a direction is flat / curved at side coverage >= / <= these (boxes.grow_sides)
    box_grow_sigma: float = 1.0
    box_flat_coverage: float = 0.75
    box_round_coverage: float = 0.4
    box_grow_sigma_z: float = 0.0  # ... vertically: top centres lie on the top face; the support sets the floor
    # An object whose Gaussians were all seeded from one side (the cameras' azimuths round it leave a gap
    # of at least this many degrees: its back unseen) gets a box round its seen front and that front
    # turned half a turn about its middle (boxes.seen_side / mirror_back); >= 360: off
    box_one_sided_gap_deg: float = 180.0
    support_reach: float = 0.04  # m: support surface searched this far below an object's lowest Gaussian
    support_margin: float = 0.03  # m: ... among stuff Gaussians this close around its footprint
    support_peel: float = 0.003  # m: a thing's Gaussians this close above its support join the support (0 = off)
    support_patch: float = 0.8  # ... all of them when this share of the thing lies there (> 1: never)
    refresh_every: int = 3  # keyframes between split/merge/smoothing passes
    # ... every keyframe for this many after a change event: a moved or added object's box grows with each
    # view of it, and readers should see it grow (0: the cadence only)
    settle_keyframes: int = 10
    # The scene changes (semantics/changes.py): an object whose Gaussians free space mostly took (this
    # share) is gone from where it stood: moved where its masks found it meanwhile (min_object_gaussians of
    # its Gaussians away from its old box), else retired; one appearing within move_window s with an
    # agreeing embedding (cosine) and a size within move_size_ratio, at least move_min_distance away, is
    # that object moved and keeps its id; one appearing with added_share of its Gaussians appeared where
    # earlier views saw free space was added.
    track_changes: bool = True
    retire_share: float = 0.5
    # ... of the Gaussians free space can judge: a view through an object's place meets its support within
    # the carving margin (mapper.free_space_margin + depth noise) and neither carves nor clears the band on
    # it; never more than half the object's height
    retire_support_band: float = 0.03  # m
    move_min_similarity: float = 0.8
    move_size_ratio: float = 1.5
    move_min_distance: float = 0.05
    move_window: float = 60.0
    added_share: float = 0.6
    max_retired: int = 16
    max_objects: int = 128  # cap: vote columns per Gaussian (incl. background)


@dataclass
class QueryConfig:
    max_results: int = 5
    # CLIP image-text cosines sit far below the text proxy's (0.725 in the oracle bench preset, calibrated by
    # `bench quality`); for CLIP this is an uncalibrated starting point: calibrate it on your own scenes
    min_similarity: float = 0.25
    min_relevancy: float = 0.5
    # objects labelled this confidently (> 1: off) and this many times above the runner-up class also match
    # through their label (QueryEngine.label_is_sure)
    label_min_confidence: float = 0.3
    label_min_ratio: float = 2.0
    # an object also matches through the mean cosine of its n views closest to the phrase (0: off): views of
    # one object differ, their average blurs
    view_evidence: int = 2
    temperature: float = 0.05
    negatives: list = field(default_factory=lambda: ["object", "things", "stuff", "texture"])
    max_instruction_chars: int = 500
    max_response_gaussians: int = 20000
    include_background: bool = False


@dataclass
class NodeConfig:
    rgb_topic: str = "/camera/color/image_raw"
    rgb_transport: RgbTransport = "raw"  # compressed: image_transport's <rgb_topic>/compressed
    depth_topic: str = "/camera/aligned_depth_to_color/image_raw"
    depth_transport: DepthTransport = "raw"  # compressedDepth: <depth_topic>/compressedDepth
    camera_info_topic: str = "/camera/color/camera_info"
    pose_topic: str = "/camera/pose"
    pose_type: PoseType = "pose"  # PoseStamped | nav_msgs/Odometry | TransformStamped (POSE_TYPES)
    pose_time_offset: float = 0.0  # s added to pose stamps (a localisation on another clock)
    # s added to depth stamps: when the depth was really captured (a depth camera stamping its frames
    # late); depth taken at another instant than the colour is moved to the colour instant (mapping.registration)
    depth_time_offset: float = 0.0
    # s from the colour camera's first row to its last (rolling shutter; 0: global shutter). The stamp is
    # taken as the middle row's instant; each row's pose is interpolated and the colour carried to the
    # stamp's (mapping.shutter)
    rgb_readout: float = 0.0
    pose_max_gap: float = 0.25  # s: poses further apart than this are not interpolated between
    pose_wait: float = 1.0  # s an image set waits for a pose after its stamp, then is skipped
    gt_instances_topic: str = "/sim/instance_mask"
    map_frame: str = "map"
    sync_slop: float = 0.02  # s: colour and depth stamps closer than this are one frame
    queue_size: int = 8  # frames waiting for the mapper (oldest dropped)
    reliable_input: bool = False  # RELIABLE sensor subscriptions (bag replay); default best effort
    publish_period: float = 1.0  # s between object / marker / cloud publications
    diagnostics_period: float = 1.0
    map_dir: str = "~/.ros/gs_semantic/maps"  # SaveMap / LoadMap / autosave stay inside this folder
    map_name: str = "gs_semantic_map"  # default map file (relative to map_dir)
    autosave_period: float = 0.0  # s; 0 = off
    depth_unit: DepthUnit = "auto"  # mm: 32FC1 depth that is really millimetres
    max_speed: float = 3.0  # m/s: faster camera motion between frames is a pose jump
    clear_on_time_jump: bool = False  # bag restart: clear the map (true) or keep it (false)
    max_image_pixels: int = 4_000_000  # larger images are refused
    max_stamp_age: float = 5.0  # s behind the newest accepted frame = stale
    # services' KEEP_LAST history: a response a busy client missed is re-sent from it (ROS's default of 10
    # lost responses under load: bench/RESULTS.md, service load)
    service_depth: int = 100


@dataclass
class Config:
    mapper: MapperConfig = field(default_factory=MapperConfig)
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    semantics: SemanticsConfig = field(default_factory=SemanticsConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    node: NodeConfig = field(default_factory=NodeConfig)

    STAGES = ("mapper", "perception", "semantics", "query", "node")

    def flat(self) -> dict:
        """{'mapper.width': 160, ...}: the ROS parameter names and defaults."""
        return {
            f"{s}.{f.name}": getattr(getattr(self, s), f.name)
            for s in self.STAGES
            for f in dataclasses.fields(getattr(self, s))
        }

    def set(self, name: str, value) -> None:
        """Set `stage.field`, checked and converted to the field's type (ConfigError otherwise)."""
        stage, _, key = name.partition(".")
        if stage not in self.STAGES or key not in _hints(type(getattr(self, stage))):
            raise ConfigError(f"unknown parameter {name!r}")
        obj = getattr(self, stage)
        setattr(obj, key, coerce(name, _hints(type(obj))[key], value))

    @classmethod
    def preset(cls, name: str) -> "Config":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}: {sorted(PRESETS)}")
        cfg = cls()
        for k, v in PRESETS[name].items():
            cfg.set(k, v)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path | None, preset: str | None = None) -> "Config":
        cfg = cls.preset(preset) if preset else cls()
        if not path:
            return cfg
        data = yaml.safe_load(Path(path).read_text()) or {}
        # ROS params layout: {node_name_or_/**: {ros__parameters: {...}}}; plain layout also accepted.
        for v in list(data.values()):
            if isinstance(v, dict) and "ros__parameters" in v:
                data = v["ros__parameters"]
                break
        for stage in cls.STAGES:
            for key, value in (data.get(stage) or {}).items():
                try:
                    cfg.set(f"{stage}.{key}", value)
                except ConfigError as e:
                    raise ConfigError(f"{path}: {e}") from None
        return cfg


@cache
def _hints(cls) -> dict:
    return get_type_hints(cls)


def coerce(name: str, typ, value):
    """`value` as the type `typ` of parameter `name` (ROS hands ints for floats, YAML strings for lists)."""
    if get_origin(typ) is Literal:
        if value not in get_args(typ):
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, get_args(typ)))}, not {value!r}")
        return value
    try:
        if typ is bool:
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                raise TypeError
            return bool(value)
        if typ is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if typ is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if typ is list or get_origin(typ) is list:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TypeError
            return list(value)
        if typ is str:
            if not isinstance(value, str):
                raise TypeError
            if name.endswith(".device") and value not in ("auto", "cpu") and not value.startswith("cuda"):
                raise ConfigError(f"{name} must be auto, cpu or cuda[:N], not {value!r}")
            return value
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be {getattr(typ, '__name__', typ)}, not {value!r}") from None
    return value


# Robot defaults are the dataclasses' own; the oracle benchmark preset changes only these.
PRESETS = {
    "robot": {},
    "oracle_bench": {
        "perception.masks": "oracle",
        "perception.embedder": "text_proxy",
        "query.min_similarity": 0.725,
    },  # min_similarity: calibrated on the tuning seeds by `bench quality`
}
