"""A plain NumPy enumeration of conversation values, independent of alignjax.conversation.

Walks every transcript one message at a time (Python loops), multiplies the speakers'
rule probabilities into ``P(transcript | x_u, x_b)``, and lets the user respond to each
posterior ``P(y | x_u, transcript)``: uniform over actions within ``sqrt(eps) * max(max|u|,
1)`` of the best at ``tau = 0`` (the rule of alignjax.simultaneous.payoffs), a softmax
at ``tau > 0``. Used by tests/test_conversation.py and benchmarks/conversation_memory.py.
"""

import itertools

import numpy as np


def conversation_values_numpy(information, user_utility, agent_utilities, user_rules, agent_rules, tau=0.0):
    """Values (K+1,) (user first) of rules given as lists of arrays:
    ``user_rules[r]`` (XU, (L M^K)^r, L), ``agent_rules[r]`` (K, XB, (L M)^r L, M)."""
    information = np.asarray(information, float)
    utils = np.concatenate([np.asarray(user_utility, float)[None], np.asarray(agent_utilities, float)])
    Y, XU, XB = information.shape
    R = len(user_rules)
    K, L, M = agent_rules[0].shape[0], user_rules[0].shape[-1], agent_rules[0].shape[-1]
    scale = max(np.max(np.abs(utils[0])), 1.0)
    atol = np.sqrt(np.finfo(float).eps) * scale
    values = np.zeros(K + 1)
    alphabet = ([range(L)] + [range(M)] * K) * R
    for transcript in itertools.product(*alphabet):
        p = np.ones((XU, XB))
        history = 0
        channels = [0] * K
        for r in range(R):
            u = transcript[r * (K + 1)]
            p = p * np.asarray(user_rules[r])[:, history, u][:, None]
            history = history * L + u
            for i in range(K):
                m = transcript[r * (K + 1) + 1 + i]
                c = channels[i] * L + u
                p = p * np.asarray(agent_rules[r])[i][:, c, m][None, :]
                channels[i] = c * M + m
                history = history * M + m
        joint = np.einsum("yuv,uv->yu", information, p)  # P(y, x_u, t)
        for xu in range(XU):
            col = joint[:, xu]
            mass = col.sum()
            if mass <= 0:
                continue
            eu = utils @ col  # (K+1, A): unnormalised expected utilities
            post = eu[0] / mass
            if tau > 0:
                z = np.exp((post - post.max()) / tau)
                q = z / z.sum()
            else:
                tied = (post >= post.max() - atol).astype(float)
                q = tied / tied.sum()
            values += eu @ q
    return values
