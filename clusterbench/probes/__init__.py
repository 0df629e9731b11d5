"""Label-using protocols on frozen features (the self-supervised literature's measures of a
representation, beside clustering): the weighted kNN classifier and the linear probe. Labels
reach these only through the evaluator, as they reach the clustering metrics."""

from clusterbench.probes.knn import knn_predict
from clusterbench.probes.linear import LinearProbe, fit_linear_probe
from clusterbench.probes.split import stratified_split

__all__ = ["knn_predict", "LinearProbe", "fit_linear_probe", "stratified_split"]
