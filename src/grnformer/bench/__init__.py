"""Benchmark layer: ground truths, metrics, baseline methods, the suite runner and its report.

Submodules are imported on use (``from grnformer.bench.network_scores import score_network``) so that importing the
package stays cheap.
"""
