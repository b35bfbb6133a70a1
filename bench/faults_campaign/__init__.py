"""The fault campaign behind ``bench/faults.py`` and its short form in the test suite.

``processes`` starts and kills the servers, ``schedule`` draws the faults from a
seed, ``driver`` sends the traffic and journals the answers, ``evidence`` reads
what the checker judges, ``checker`` judges the six invariants, ``campaign`` runs
it all and ``report`` prints the result.
"""

from bench.faults_campaign.campaign import CampaignConfig, CampaignResult, run_campaign
from bench.faults_campaign.report import render

__all__ = ["CampaignConfig", "CampaignResult", "render", "run_campaign"]
