"""Settings of raw-to-edit alignment, one dataclass with every knob and what it does.

Defaults suit the contract's analysis grid (22050 Hz, hop 256: 86 frames per second).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class AlignParams:
    """Alignment settings (frames are analysis frames of hop_length samples).

    Landmarks (fingerprint.py):
        peak_band_radius, peak_frame_radius: a peak is the maximum of this neighbourhood.
        peak_range_db: peaks more than this below the loudest band nearby are ignored.
        peak_min_db: peaks below this level relative to the file's maximum are ignored.
        level_frames: width of "nearby" for peak_range_db.
        peaks_per_s: the strongest peaks kept per second.
        fan_out: pairs hashed per anchor peak.
        pair_max_frames, pair_max_bands: the target zone of a pair (at most 63 and 63).
        max_hash_count: hashes found more often than this in the raw are not used.
    Voting:
        block_frames: edit frames per voting block.
        top_k: candidate offsets kept per block.
        tie_ratio, max_candidates: offsets with at least tie_ratio of the block's best
            votes are kept as well, up to max_candidates in all (identical copies tie).
        copy_ratio: offsets with at least this share of their block's best votes are
            checked as places that may hold the same audio (alternatives).
        min_votes: votes an offset needs to become a candidate.
        persist_blocks: a block's candidates are also tried in this many blocks either side.
        carry_candidates: the best this many candidates of the nearest blocks with any are
            tried in blocks without candidates (quiet passages have few landmarks).
    Path (path.py):
        step_frames: frames per Viterbi step (a divisor of block_frames); joins are placed
            to the sample afterwards, so the step only bounds the shortest segment found.
        feature_lag: frames between the two spectra whose difference makes a match feature.
        match_threshold: per-frame feature correlation that counts as evidence for a
            candidate (above) or against it (below); "not in raw" scores 0.
        match_full: correlation at which a frame counts as fully matched; higher values
            say no more (identical copies of the material, met at another fraction of a
            frame, must score the same, so that the costs below decide between them).
        jump_cost: cost of any jump (cut, loop, reorder), in units of per-frame evidence.
        back_cost: added to jump_cost for a jump back in the raw (loop, reorder), so that
            of two equal explanations the one moving forward wins.
        not_in_raw_cost: cost of entering or leaving "not in raw".
        min_not_in_raw_s: runs of "not in raw" shorter than this between two segments are
            given to their neighbours (they are crossfades or quiet passages).
    Refinement (refine.py):
        join_search_s: half-width of the window searched around each join for the seam.
        lag_search_frames: half-width, in frames, of the lag search of each segment.
        lag_window_s: longest stretch of a segment used to measure its lag.
        same_lag_ms: neighbouring segments whose lags differ by less are merged.
        same_audio_margin: two lags play a stretch equally well when their waveform
            correlations there differ by at most this (identical copies in the raw); the
            fewer segments then win, and the other copies are listed as alternatives.
        fill_min_rho: a segment grows into neighbouring "not in raw" frames whose waveform
            correlation with the raw at its lag reaches this.
        fade_db: a fade ends where the edit's gain comes within this of the segment's.
    Confidence:
        ambiguity_margin: a frame is ambiguous when another offset matches it within this
            correlation of the chosen one (identical material, such as exact loops).
        warn_aligned_fraction: below this aligned fraction, warn that the edit may not come
            from the raw.
    """

    peak_band_radius: int = 3
    peak_frame_radius: int = 4
    peak_range_db: float = 40.0
    peak_min_db: float = -72.0
    level_frames: int = 87
    peaks_per_s: float = 30.0
    fan_out: int = 6
    pair_max_frames: int = 48
    pair_max_bands: int = 31
    max_hash_count: int = 200
    block_frames: int = 32
    top_k: int = 6
    tie_ratio: float = 0.8
    max_candidates: int = 48
    copy_ratio: float = 0.5
    min_votes: int = 3
    persist_blocks: int = 3
    carry_candidates: int = 2
    step_frames: int = 4
    feature_lag: int = 2
    match_threshold: float = 0.25
    match_full: float = 0.6
    jump_cost: float = 4.0
    back_cost: float = 2.0
    not_in_raw_cost: float = 4.0
    min_not_in_raw_s: float = 0.5
    join_search_s: float = 0.25
    lag_search_frames: int = 2
    lag_window_s: float = 1.5
    same_lag_ms: float = 2.0
    same_audio_margin: float = 0.02
    fill_min_rho: float = 0.5
    fade_db: float = 1.0
    ambiguity_margin: float = 0.05
    warn_aligned_fraction: float = 0.5


    def __post_init__(self):
        if self.block_frames % self.step_frames:
            raise UserError(f"align settings: block_frames {self.block_frames} must be a "
                            f"multiple of step_frames {self.step_frames}")
        if not (0 < self.pair_max_frames < 64 and 0 < self.pair_max_bands < 64):
            raise UserError("align settings: pair_max_frames and pair_max_bands must be 1..63")


DEFAULT_ALIGN = AlignParams()
