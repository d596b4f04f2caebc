"""The pointer network: for each edit frame, point at the raw frame to copy.

config (settings), model (encoder, decoder, heads), data (steps and batches), train,
decode (greedy decoding in blocks) and infer (propose_edit for editorbot.editors).
"""
