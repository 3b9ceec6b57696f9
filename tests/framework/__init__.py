"""What the tests share (Bitcoin Core's ``test_framework``): builders, chains, nodes,
processes and a raw P2P client.  Tests import its modules by their full name
(``from tests.framework.nodes import node_network``).

Building data
    ``blocktools``   params with cheap work (``make_params``), blocks on any parent
                     (``build_block``, ``extend``, ``mine_block``), a node's next block
                     valid or broken one chosen way (``child_block``,
                     ``with_bad_proof_of_work``), spends of known coins
Chain states
    ``chains``       ``open_chain`` (fixed far-future clock), ``new_chain`` (real clock),
                     ``opened_chain`` and ``ChainSet``, which close what they open
    ``replay``       the replay oracle: ``assert_matches_replay`` checks a chain state
                     against a fresh one fed its own active chain
In-process nodes
    ``nodes``        ``node_network(tmp_path, n, "line")`` starts, links and stops nodes;
                     ``link``, ``join``, ``split``; ``sync_blocks``, ``sync_mempools``,
                     ``sync_all``
    ``wire``         ``WireClient``: a raw P2P connection that sends anything, valid or not
    ``managers``     bare PeerManagers (the network layer alone) on a test network
Processes
    ``programs``     the commands and environment of this tree's programs, free ports,
                     ``killed_at_exit`` for child processes
    ``daemon``       ``Daemon``: an ``obol-node`` process and its HTTP API ``Client``
    ``schema_hooks`` schemathesis hooks of the API's schema run (the address format,
                     loopback-only dials), loaded by that run, not by the suite
    ``walletcli``    ``obol-wallet`` as a process or in-process, with test keystores
    ``crash_worker`` a script, run as a child and killed at random by the crash tests
Waiting
    ``util``         ``wait_until`` (async), ``poll_until`` (blocking), ``scenario_log``,
                     ``REPO_ROOT``

The rules they serve: no fixed sleeps (wait for the condition, with a deadline);
traffic to loopback only; whatever a test starts (node, chain, process) is stopped by
the ``with`` that started it, so tests hold no try/finally.
"""
