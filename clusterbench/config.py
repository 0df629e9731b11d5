"""Typed schemas for the Hydra config.

The values users see live in the YAML files under ``conf/``; these dataclasses give them
types, so a misspelt key or a value of the wrong type fails when Hydra composes the config,
before any data is read. Each group file pulls its schema in with
``defaults: [/schema/<group>/<name>@_here_, _self_]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Split(str, Enum):
    all = "all"
    train = "train"
    test = "test"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class KMeansBackend(str, Enum):
    faiss = "faiss"
    torch = "torch"


class CovarianceType(str, Enum):
    full = "full"
    tied = "tied"
    diag = "diag"
    spherical = "spherical"


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"
    lars = "lars"
    rmsprop = "rmsprop"


class GradSync(str, Enum):
    ddp = "ddp"  # torch's DistributedDataParallel: bucketed all-reduce overlapped with the backward
    flat = "flat"  # one flattened all-reduce after the backward (the older path, for comparison)


class CompileMode(str, Enum):
    default = "default"
    reduce_overhead = "reduce-overhead"  # CUDA graphs: for small nets whose GPU steps are launch-bound
    max_autotune = "max-autotune"


class Placement(str, Enum):
    auto = "auto"  # on the device when the images fit with room to spare, else host
    device = "device"
    host = "host"  # pinned staging, each batch copied one step ahead


class Schedule(str, Enum):
    cosine = "cosine"  # linear warm-up, then cosine decay to min_lr
    constant = "constant"  # linear warm-up, then lr


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"  # CUDA only: autocast with a GradScaler


class ClusterAlgorithm(str, Enum):
    kmeans = "kmeans"
    gmm = "gmm"


class Decoder(str, Enum):
    mlp = "mlp"
    conv = "conv"


class QOptimizer(str, Enum):
    discriminator = "discriminator"  # the official code: Q's head with D's variables, L_I in D's loss too
    generator = "generator"  # the paper's min over G and Q: Q's head with G's optimiser


class PartMixture(str, Enum):
    official = "official"  # the official code: each part's mixture weights are the raw presences a_km
    paper = "paper"  # the paper's Eq.: a_km normalised over the candidates (and the dummy)


class TemplateNonlin(str, Enum):
    sigmoid = "sigmoid"  # the MNIST configuration's
    relu1 = "relu1"  # min(max(x, 0), 1): the code's default elsewhere


class Cifar100Targets(str, Enum):
    coarse = "coarse"
    fine = "fine"


class Resize(str, Enum):
    """How image files of another size become S×S (clusterbench.data.images)."""

    crop = "crop"  # short side to S, centre square
    stretch = "stretch"  # straight to S×S (the aspect ratio is lost)
    pad = "pad"  # long side to S, zero borders


# --- dataset -------------------------------------------------------------------------


@dataclass
class DatasetConfig:
    _target_: str = MISSING  # the loader function
    name: str = MISSING
    root: str = MISSING
    split: Split = Split.all
    limit: Optional[int] = None  # class-stratified subset of this many images
    download: bool = False


@dataclass
class Cifar100Config(DatasetConfig):
    targets: Cifar100Targets = Cifar100Targets.coarse


@dataclass
class STL10Config(DatasetConfig):
    unlabeled: bool = False


@dataclass
class ImageNetDogConfig(DatasetConfig):
    image_size: int = 96
    resize: Resize = Resize.stretch  # CC's Resize((s, s)); earlier caches and results assume it
    skip_bad: bool = False  # leave unreadable images out (with a warning) instead of stopping


@dataclass
class FolderConfig(DatasetConfig):
    """A folder of the user's images: class subfolders give labels (clusterbench.data.folder)."""

    root: Optional[str] = None  # required: the loader names the key when it is missing
    labels: bool = True  # false: cluster every image under root, ignoring class folders
    image_size: Optional[int] = None  # S of the S×S images; null: the native size, which all must share
    resize: Resize = Resize.crop
    channels: str = "auto"  # auto (1 when every image is greyscale) | 1 | 3
    skip_bad: bool = False  # leave unreadable images out (with a warning) instead of stopping


@dataclass
class ArrayConfig(DatasetConfig):
    """A .npy / .npz file of images (clusterbench.data.array)."""

    root: Optional[str] = None  # unused: the file is dataset.path
    path: Optional[str] = None  # required: the loader names the key when it is missing


@dataclass
class InMemoryDatasetConfig(DatasetConfig):
    """A dataset that reads no files (digits, synthetic): a root given to it is refused."""

    root: Optional[str] = None


@dataclass
class SyntheticConfig(InMemoryDatasetConfig):
    num_samples: int = 600
    num_classes: int = 3
    image_size: int = 8
    channels: int = 1
    noise: float = 0.15
    data_seed: int = 0


# --- method --------------------------------------------------------------------------


@dataclass
class MethodConfig:
    _target_: str = MISSING
    num_clusters: Optional[int] = None  # null: the dataset's class count


@dataclass
class KMeansMethodConfig(MethodConfig):
    pca_dim: Optional[int] = None
    backend: KMeansBackend = KMeansBackend.faiss
    niter: int = 50
    restarts: int = 10
    spherical: bool = False
    max_points_per_centroid: Optional[int] = None  # null: train on every point


@dataclass
class GMMMethodConfig(MethodConfig):
    pca_dim: Optional[int] = None
    covariance_type: CovarianceType = CovarianceType.full
    restarts: int = 1
    max_iter: int = 100
    reg_covar: float = 1e-6


@dataclass
class DeepMethodConfig(MethodConfig):
    """What every trained method shares: how its final clusters are found."""

    kmeans_restarts: int = 3  # k-means restarts on the final embeddings


@dataclass
class MoCoConfig(DeepMethodConfig):
    queue_size: int = 4096  # K negatives
    momentum: float = 0.99  # m of the key encoder's EMA
    temperature: float = 0.1  # τ
    feature_dim: int = 128  # output of the projection head
    head_layers: int = 2  # 1: linear (v1); 2: MLP (v2)
    head_hidden: int = 512
    head_batch_norm: bool = False  # BatchNorm in the head (SimCLR's); MoCo v2's has none
    symmetric: bool = False  # also contrast (k, q): the CIFAR demo's option
    split_bn: int = 1  # BN statistics over this many sub-batches on one device (1: off)
    shuffle_bn: bool = True  # under DDP: shuffle keys across ranks before the key encoder
    cluster_on: str = "backbone"  # backbone | head: which features the final k-means sees


@dataclass
class AEConfig(DeepMethodConfig):
    embedding_dim: int = 12  # the bottleneck that is clustered
    decoder: Decoder = Decoder.mlp
    decoder_hidden: list[int] = field(default_factory=lambda: [128])  # mlp decoder widths, bottleneck outwards
    cluster: ClusterAlgorithm = ClusterAlgorithm.gmm
    gmm_covariance: CovarianceType = CovarianceType.full
    augment_input: bool = False  # train on augmented views instead of the plain images


@dataclass
class PCLConfig(MoCoConfig):
    """PCL (ProtoNCE); owned by clusterbench/methods/pcl.py. MoCo's fields plus the E-step's."""

    num_prototypes: list[int] = field(default_factory=lambda: [250, 500, 1000])  # K of each k-means (ImageNet: 25k, 50k, 100k)
    warmup_epochs: int = 20  # epochs of plain InfoNCE before the first E-step
    negative_prototypes: int = 16384  # r negative prototypes per ProtoNCE (capped at the prototypes available)
    concentration_alpha: float = 10.0  # α in φ = Σ‖v − c‖ / (Z · log(Z + α))
    estep_niter: int = 20  # Lloyd iterations of the E-step k-means
    estep_restarts: int = 5  # k-means restarts (faiss nredo) per K
    estep_backend: KMeansBackend = KMeansBackend.faiss  # faiss | torch (torch runs on the GPU without faiss-gpu)
    proto_nce: str = "official"  # official: the authors' batch-wide logits (published numbers) | paper: per row, as printed


@dataclass
class SwAVConfig(DeepMethodConfig):
    """SwAV; owned by clusterbench/methods/swav.py."""

    num_prototypes: int = 3000  # K; = the class count: clusters are the prototype argmax
    feature_dim: int = 128  # z, the L2-normalised projection the prototypes score
    head_layers: int = 2  # projection head depth (1: linear)
    head_hidden: int = 2048
    head_batch_norm: bool = True  # Linear → BN → ReLU → Linear, as the paper
    temperature: float = 0.1  # τ of the swapped prediction's softmax
    epsilon: float = 0.05  # ε of Sinkhorn–Knopp: lower it if the codes collapse
    sinkhorn_iterations: int = 3
    freeze_prototypes_niters: int = 313  # optimiser steps with the prototypes frozen
    queue_length: int = 0  # feature queue per global crop, over all ranks (0: off)
    epoch_queue_starts: int = 15  # the epoch (from 0) the queue starts filling; used once full
    cluster_on: str = "backbone"  # backbone | head: the features k-means clusters (K ≠ classes)


@dataclass
class DeepClusterConfig(DeepMethodConfig):
    """DeepCluster (v1 and v2); owned by clusterbench/methods/deepcluster.py."""

    version: str = "v1"  # v1: DeepCluster (ECCV 2018) | v2: DeepCluster-v2 (the SwAV paper)
    num_prototypes: int = 100  # K of the per-epoch k-means (pseudo-classes); paper: 10000 (v1), 3000 (v2)
    num_heads: int = 1  # v2: prototype heads, each its own k-means (paper: 3); v1: 1
    pca_dim: Optional[int] = 256  # v1: PCA-whitening dimension (capped at the features'); null: none
    kmeans_iters: Optional[int] = None  # null: 20 (v1, faiss) / 10 (v2)
    kmeans_backend: KMeansBackend = KMeansBackend.faiss  # the per-epoch k-means
    head_layers: Optional[int] = None  # Linear layers of the head; null: 1 (v1 top layer) / 2 (v2 projection)
    head_hidden: int = 512  # hidden width of a ≥ 2-layer head
    head_batch_norm: bool = True  # BatchNorm in the head's hidden layers (v2's projection has it)
    feature_dim: int = 128  # v2: z dimension (prototype space)
    temperature: float = 0.1  # v2: τ of the prototype softmax
    crops_for_assign: int = 2  # v2: the first this many views fill the memory banks
    uniform_sampling: bool = True  # v1: sample uniformly over clusters (UnifLabelSampler)
    sobel: bool = False  # v1 paper: Sobel-filter the input (for RGB); the backbone's first conv takes 2 channels


@dataclass
class MiCEConfig(DeepMethodConfig):
    """MiCE; owned by clusterbench/methods/mice.py. K experts = num_clusters (null: the class count)."""

    queue_size: int = 16384  # ν teacher embeddings per expert (negatives)
    momentum: float = 0.999  # EMA of the teacher (backbone + expert heads)
    temperature: float = 1.0  # τ of the experts
    gating_temperature: float = 1.0  # κ of the gating softmax
    feature_dim: int = 128  # embedding dim of each expert and of the gating (≥ K − 1)
    mu_update: str = "full"  # full: Eq. 13 over the whole set each epoch (the paper) | batch_ema: online from the batches
    mu_momentum: float = 0.99  # batch_ema: S ← m·S + (1 − m)·batch mean of q_nk v_{n,k}


@dataclass
class InfoGANConfig(DeepMethodConfig):
    """InfoGAN; owned by clusterbench/methods/infogan.py. The categorical code has K = num_clusters
    categories (null: the class count)."""

    noise_dim: int = 62  # incompressible noise z ~ U(−1, 1)
    continuous_codes: int = 2  # c ~ U(−1, 1), Q: a Gaussian of σ 1
    info_weight: float = 1.0  # λ of L_I
    continuous_weight: float = 1.0  # the continuous codes' share of L_I (the official code: 1)
    generator_lr_scale: float = 5.0  # G's learning rate = this × trainer.lr (D's): 1e-3 against 2e-4
    beta1: float = 0.5  # Adam's β1 for both
    beta2: float = 0.999
    q_optimizer: QOptimizer = QOptimizer.discriminator
    leaky_slope: float = 0.01  # Q's head (the body's is backbone.leaky_slope); the paper: 0.1, the code: 0.01
    batch_norm: bool = True  # BatchNorm in G and Q's head (false: an ablation; exact DDP equality tests)


@dataclass
class SCAEConfig(DeepMethodConfig):
    """The Stacked Capsule Autoencoder; owned by clusterbench/methods/scae.py. Defaults: the
    official MNIST configuration (run_mnist.sh), 40 part and 32 object capsules."""

    part_capsules: int = 40  # M
    object_capsules: int = 32  # K
    special_features: int = 16  # each part's feature vector (→ template intensity, object encoder)
    template_size: int = 11  # T: each part's learned T×T template (and alpha)
    template_nonlin: TemplateNonlin = TemplateNonlin.sigmoid
    canvas_size: Optional[int] = None  # images are placed on a zero canvas this big (MNIST: 40); null: the image size
    random_shift: bool = True  # training places each image at a uniformly random offset on the canvas (the code's pad_and_shift)
    presence_noise: float = 4.0  # U(−w/2, w/2) added to presence logits in training (parts and objects)
    pixel_std: float = 1.0  # σ of the pixel mixture's Normals (the code's, fixed)
    set_layers: int = 3  # Set Transformer self-attention blocks
    set_heads: int = 1
    set_dim: int = 16  # width inside the Set Transformer
    set_output_dim: int = 256  # each object capsule's feature vector
    capsule_params: int = 32  # per-object-capsule MLP's output (the capsule parameters)
    capsule_hidden: int = 128
    part_mixture: PartMixture = PartMixture.official
    caps_ll_weight: float = 1.0
    dynamic_l2_weight: float = 10.0
    prior_within_weight: float = 2.0
    prior_between_weight: float = 0.35
    posterior_within_weight: float = 0.7
    posterior_between_weight: float = 0.2
    prior_within_constant: Optional[float] = None  # null: K / clusters (the code's 3.2); run_mnist.sh's unused flag says 4.3


# --- clustering stage ---------------------------------------------------------------
# ``cluster=...``: how a trained method's features become clusters (clusterbench.stages).


@dataclass
class StageConfig:
    _target_: str = MISSING
    name: str = MISSING
    # minutes of trainer.max_minutes kept for this stage: training stops that much earlier, so
    # the budget covers the whole run (null: the stage runs after the budget)
    minutes: Optional[float] = None


@dataclass
class KMeansStageConfig(StageConfig):
    restarts: int = 3
    niter: int = 50
    normalize: bool = True  # L2-normalise the features first (cosine geometry)
    backend: KMeansBackend = KMeansBackend.faiss


@dataclass
class GMMStageConfig(StageConfig):
    pca_dim: Optional[int] = 50
    covariance_type: CovarianceType = CovarianceType.full
    restarts: int = 1
    max_iter: int = 100
    reg_covar: float = 1e-6
    normalize: bool = True


class UMAPMetric(str, Enum):
    cosine = "cosine"
    euclidean = "euclidean"


@dataclass
class UMAPStageConfig(StageConfig):
    n_components: int = 10
    n_neighbors: int = 20
    min_dist: float = 0.0
    metric: UMAPMetric = UMAPMetric.cosine
    pca_dim: Optional[int] = None  # PCA before UMAP (faster neighbour search)
    n_epochs: Optional[int] = None  # null: umap-learn's default (200 for large sets)
    parallel: bool = False  # every core, not bit-reproducible; false: single-threaded, seeded
    covariance_type: CovarianceType = CovarianceType.full
    restarts: int = 3  # GMM restarts: one can stop in a local optimum that merges two clusters
    init: str = "spectral"  # spectral (umap-learn's, N2D's) | pca (faster, same MNIST scores)


@dataclass
class SCANStageConfig(StageConfig):
    """SCAN (Van Gansbeke et al. 2020): neighbours → clustering heads → self-labelling."""

    num_neighbors: int = 20
    entropy_weight: float = 5.0  # λ of the SCAN loss
    num_heads: int = 10  # heads trained side by side; the lowest SCAN loss is kept
    select_entropy_weight: float = 1.0  # the entropy's weight when choosing the head (the authors' code: 1)
    update_head_only: bool = False  # SCAN step: freeze the pretext network (the authors' ImageNet setting)
    epochs: int = 50  # SCAN step
    batch_size: int = 128  # anchors per step (each brings one neighbour)
    selflabel_epochs: int = 200  # 0: no self-labelling
    selflabel_batch_size: int = 1000
    threshold: float = 0.99  # confident: max p > threshold
    class_balance: bool = True  # weight each pseudo-class by n / n_c in the cross-entropy
    optimizer: Optimizer = Optimizer.adam
    lr: float = 1e-4
    weight_decay: float = 1e-4
    selflabel_share: float = 0.5  # of cluster.minutes, for self-labelling (the rest: the SCAN step)
    eval_every: int = 0  # epochs between evaluations inside each step (0: at its end only)
    neighbor_backend: str = "auto"  # auto (faiss on the CPU, torch on a GPU) | faiss | torch


# --- backbone -----------------------------------------------------------------------
# Every backbone is built with the dataset's ``in_channels`` and ``image_size`` as well.


@dataclass
class BackboneConfig:
    _target_: str = MISSING
    name: str = MISSING


@dataclass
class ConvNetConfig(BackboneConfig):
    """The MNIST reference study's ConvNet: 2 conv + max-pool + FC."""

    channels: list[int] = field(default_factory=lambda: [32, 64])
    hidden: int = 128  # width of the FC layer = the feature dimension
    dropout: float = 0.0


@dataclass
class StridedConvNetConfig(BackboneConfig):
    """Strided 3×3 conv + BN + ReLU blocks, then global average pooling."""

    widths: Optional[list[int]] = None  # null: one stage per halving down to 2 px (auto_widths)


@dataclass
class ResNetConfig(BackboneConfig):
    depth: int = 18  # 18 | 34 | 50
    cifar_stem: Optional[bool] = None  # 3×3 conv, no max-pool; null: when image_size ≤ 64
    width: int = 64  # channels of the first stage


@dataclass
class MLPConfig(BackboneConfig):
    hidden: list[int] = field(default_factory=lambda: [500, 500, 2000])
    batch_norm: bool = False


@dataclass
class InfoGANBodyConfig(BackboneConfig):
    """InfoGAN's D/Q body: 4×4 stride-2 convs (one more per doubling past 28 px), FC ``hidden``."""

    width: int = 64  # the first conv's channels, doubled each stage
    max_width: int = 512
    hidden: int = 1024  # the FC layer = out_dim
    leaky_slope: float = 0.01  # the official code's leaky_rectify; the paper's text: 0.1
    batch_norm: bool = True  # after every conv but the first, and after the FC


@dataclass
class CapsuleConvConfig(BackboneConfig):
    """SCAE's part encoder CNN: 3×3 convs, ReLU, a spatial map out (out_dim = widths[-1])."""

    widths: list[int] = field(default_factory=lambda: [128, 128, 128, 128])
    strides: list[int] = field(default_factory=lambda: [2, 2, 1, 1])
    padding: str = "valid"  # valid (the code's) | same (keeps small images' maps)


# --- augmentation --------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """A batched, on-device view recipe (clusterbench.data.augment).

    Crop, flip and affine compose into one matrix per sample and one ``grid_sample``.
    """

    name: str = MISSING
    global_crops: int = 2
    global_size: Optional[int] = None  # null: the dataset's image size
    global_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])  # area fraction of the crop
    local_crops: int = 0  # SwAV multi-crop: small crops, never used for codes
    local_size: Optional[int] = None  # null: 3/7 of the image size (SwAV's 96 of 224)
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.2])
    ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333333])  # aspect ratio range
    hflip: float = 0.5  # probability
    rotate: float = 0.0  # max degrees, uniform in ±rotate
    translate: float = 0.0  # max shift, fraction of the image size
    jitter: float = 0.8  # probability of colour jitter
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale: float = 0.2  # probability
    blur: float = 0.5  # probability
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # Gaussian σ range, in pixels of the view
    solarize: float = 0.0  # probability
    solarize_threshold: float = 0.5


# --- hardware / top level ------------------------------------------------------------


@dataclass
class HardwareConfig:
    device: Device = Device.auto  # auto: cuda when available
    threads: Optional[int] = None  # torch intra-op threads; null keeps torch's default
    distributed: bool = False  # one process per device under torchrun (hardware=ddp)
    backend: Optional[str] = None  # torch.distributed backend; null: nccl on CUDA, gloo on CPU
    sync_bn: bool = False  # under DDP: BatchNorm statistics over the global batch
    grad_sync: GradSync = GradSync.ddp  # under DDP: how gradients are averaged
    timeout_minutes: float = 30.0  # under DDP: a collective waiting longer than this fails (a dead or hung rank)


@dataclass
class TrainerConfig:
    """The shared training loop (clusterbench.engine) of the deep methods."""

    epochs: int = 100
    max_minutes: Optional[float] = None  # wall-clock budget: stop cleanly, then evaluate
    batch_size: int = 256  # global batch (split over DDP ranks)
    optimizer: Optimizer = Optimizer.sgd
    lr: float = 0.06
    momentum: float = 0.9  # sgd / lars
    weight_decay: float = 5e-4
    lars_eta: float = 0.001  # LARS trust coefficient η
    lars_clip: bool = False  # LARS: step lr·min(trust/lr, 1) (apex LARC's clip mode)
    rmsprop_alpha: float = 0.9  # RMSProp's mean-square decay (TensorFlow's default 0.9; torch's own: 0.99)
    rmsprop_eps: float = 1e-3  # added to √(mean square): TF's ε inside the root ≈ this ε² (SCAE: 6e-7 ≈ (7.8e-4)²)
    schedule: Schedule = Schedule.cosine
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    eval_every: int = 10  # epochs between evaluations (0: only at the end)
    checkpoint_every: int = 1  # epochs between checkpoints (0: never)
    grad_clip: Optional[float] = None  # max global gradient norm
    precision: Precision = Precision.fp32
    compile: bool = False  # torch.compile the model's sub-modules
    compile_mode: CompileMode = CompileMode.default  # torch.compile's mode: reduce-overhead = CUDA graphs
    channels_last: bool = True
    embed_batch_size: int = 1024  # images per forward when embedding the dataset
    sync_every: int = 50  # steps between host reads of the loss and the NaN flag (and at each epoch's end)


@dataclass
class PlotsConfig:
    enabled: bool = True
    embedding: bool = True  # t-SNE map of the final embeddings (by cluster and by label)
    embedding_points: int = 1000  # subsample: t-SNE cost grows with N²
    embedding_map: str = "auto"  # auto (t-SNE when it costs ≤ 10% of the run, else PCA) | tsne | umap | pca
    confusion: bool = True
    curves: bool = True  # training curves, for methods that log epochs
    clusters: bool = True  # clusters.png: sample images of every cluster (nearest the centre, and random)


class FeatureDtype(str, Enum):
    float16 = "float16"
    float32 = "float32"


@dataclass
class ExportConfig:
    """What a run leaves beside metrics.json for reuse (clusterbench.runfolder)."""

    features: bool = True  # features.npy: the final embedding of every evaluated image (deep methods)
    features_dtype: FeatureDtype = FeatureDtype.float16  # float16 halves the file; float32 keeps every bit
    clusters: bool = True  # clusters.npz: the fitted clustering, enough to assign new images
    model: bool = True  # model.pt: the final weights + config + preprocessing (what clusterbench-predict loads)
    assignments_csv: bool = True  # assignments.csv: index, name, cluster, confidence, label


@dataclass
class EvalConfig:
    """Label-using probes on the frozen features, beside the clustering metrics (clusterbench.probes)."""

    knn: bool = False  # weighted kNN (Wu et al. 2018): knn_acc of the test images, the train images as memory
    knn_k: int = 200
    knn_temperature: float = 0.07  # τ of the vote weights exp(s/τ)
    linear: bool = False  # multinomial logistic regression on L2-normalised features: linear_acc
    linear_l2: float = 1.0e-4  # λ of (λ/2)·‖W‖² (bias free): scikit-learn's C = 1/(λ·N)
    linear_max_iter: int = 500  # L-BFGS function evaluations
    test_share: float = 0.2  # held out (seeded, stratified) where the dataset has no test split
    split: Optional[str] = None  # the split scored (train → test: dataset.split=train eval.split=test); null: the fitted one


STAGE_SCHEMAS: dict[str, type] = {"own": StageConfig, "kmeans": KMeansStageConfig, "gmm": GMMStageConfig, "umap": UMAPStageConfig, "scan": SCANStageConfig}


# the schema each conf/backbone/*.yaml names in its defaults (/schema/backbone/<name>)
BACKBONE_SCHEMAS: dict[str, type] = {"base": BackboneConfig, "convnet": ConvNetConfig, "strided": StridedConvNetConfig, "resnet": ResNetConfig,
                                     "mlp": MLPConfig, "infogan": InfoGANBodyConfig, "capsule": CapsuleConvConfig}


@dataclass
class DataConfig:
    """How the deep methods' training loop holds the images (clusterbench.data.placement)."""

    placement: Placement = Placement.auto


@dataclass
class RunConfig:
    method: Any = MISSING
    dataset: Any = MISSING
    backbone: Any = MISSING
    hardware: HardwareConfig = MISSING
    augment: Any = MISSING
    trainer: TrainerConfig = MISSING
    seed: int = 0
    resume: bool = False  # continue from the run folder's checkpoint (same hydra.run.dir)
    save_assignments: bool = True
    plots: PlotsConfig = field(default_factory=PlotsConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    cluster: Any = None  # the clustering stage after training (conf/cluster/); null: the method's own read-out
    # A method × dataset recipe's stage, used when cluster=... is not given: {option: scan, <its settings>}
    # (clusterbench.recipes.recipe_stage). A recipe cannot choose the cluster group itself: Hydra
    # forbids default-list overrides in the interpolated method_dataset files.
    recipe_cluster: Any = None
    # Likewise the recipe's view recipe and backbone, used unless augment=... / backbone=... is
    # given on the command line: a conf/augment/, conf/backbone/ option name (recipe_augment:
    # mnist_study), or the name with that option's settings over it ({option: resnet18,
    # cifar_stem: true}), which the recipe could not write under augment: / backbone: (those
    # merge into the group's default option, whose schema may lack them).
    recipe_augment: Any = None
    recipe_backbone: Any = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logger: Any = None  # the experiment tracker (conf/logger/: none | tensorboard | mlflow | wandb)
    store: Optional[str] = None  # SQLite results store this run is appended to
    night: Optional[str] = None  # the nightly batch label; null: today's UTC date
    rerun: bool = False  # multirun: also re-run jobs whose folder holds a finished result


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for name, node in {
        "base": DatasetConfig,
        "cifar100": Cifar100Config,
        "stl10": STL10Config,
        "imagenet_dog": ImageNetDogConfig,
        "folder": FolderConfig,
        "array": ArrayConfig,
        "in_memory": InMemoryDatasetConfig,
        "synthetic": SyntheticConfig,
    }.items():
        cs.store(group="schema/dataset", name=name, node=node)
    cs.store(group="schema/method", name="kmeans", node=KMeansMethodConfig)
    cs.store(group="schema/method", name="gmm", node=GMMMethodConfig)
    cs.store(group="schema/method", name="moco", node=MoCoConfig)
    cs.store(group="schema/method", name="ae", node=AEConfig)
    cs.store(group="schema/method", name="pcl", node=PCLConfig)
    cs.store(group="schema/method", name="swav", node=SwAVConfig)
    cs.store(group="schema/method", name="deepcluster", node=DeepClusterConfig)
    cs.store(group="schema/method", name="mice", node=MiCEConfig)
    cs.store(group="schema/method", name="infogan", node=InfoGANConfig)
    cs.store(group="schema/method", name="scae", node=SCAEConfig)
    cs.store(group="schema/trainer", name="base", node=TrainerConfig)
    for name, node in BACKBONE_SCHEMAS.items():
        cs.store(group="schema/backbone", name=name, node=node)
    cs.store(group="schema/augment", name="base", node=AugmentConfig)
    for name, node in {**STAGE_SCHEMAS, "base": StageConfig}.items():  # "own" has no settings beyond the base
        cs.store(group="schema/cluster", name=name, node=node)
    cs.store(group="schema/hardware", name="base", node=HardwareConfig)
