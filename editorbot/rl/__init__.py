"""The RL editing environment: an agent walks a raw recording's beats and edits it.

actions (factored 20 x 5 x 5 actions, masks, the editing track), beat_features (121 per
beat), state (882 per step), reward (episode-end components), env (Gymnasium) and replay
(actions -> Edit -> audio); the audio effects the actions name are in editorbot.effects.
"""
