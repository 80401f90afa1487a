"""Make student submissions for the grading tests and benchmark: good, wrong (mutants) and bad ones.

Everything starts from the notebook nbgrader released, the way a student's
work does: ``solved`` fills its solution cells with the instructor's answer
(the source's solution regions without their markers) or with other code.

Mutants are data: ``MUTANTS[assignment][solution_cell]`` lists plausible wrong
bodies for that cell, each of which must cost the points of ``CHECK_OF[cell]``.
Add an exercise's mutants here as a new entry; the tests pick it up.

Bad submissions (``bad_submissions``) are the issue's list, built on
exercise 1: each says which checks must keep full marks, which must score 0,
and what the gradebook's status must say.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

EX01 = "ex01_mdp_bellman"
EX02 = "ex02_dynamic_programming"
EX03 = "ex03_mc_vs_td"
EX04 = "ex04_sarsa_vs_q_learning"
EX05 = "ex05_dqn"
EX06 = "ex06_policy_gradient"
EX07 = "ex07_actor_critic_gae"
EX08 = "ex08_trpo"
EX09 = "ex09_ppo"
EX10 = "ex10_llm_as_policy"
EX11 = "ex11_reward_models"
EX12 = "ex12_rlhf_ppo"
EX13 = "ex13_grpo"
EX14 = "ex14_dpo"


# ---------------------------------------------------------------- reading the course folder
def released(course_dir: Path, assignment: str) -> nbformat.NotebookNode:
    """A fresh copy of the notebook students were given."""
    return nbformat.read(Path(course_dir) / "release" / assignment / f"{assignment}.ipynb", as_version=4)


def _source(course_dir: Path, assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(Path(course_dir) / "source" / assignment / f"{assignment}.ipynb", as_version=4)


def _gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def answers(course_dir: Path, assignment: str) -> dict[str, str]:
    """The instructor's answer to each solution cell, as a student would type it (no markers)."""
    out = {}
    for cell in _source(course_dir, assignment).cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            lines = [line for line in cell.source.split("\n") if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line]
            out[_gid(cell)] = "\n".join(lines)
    return out


def solved(course_dir: Path, assignment: str, replace: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The released notebook with every solution cell answered; ``replace`` overrides cells by grade_id."""
    nb = released(course_dir, assignment)
    given = {**answers(course_dir, assignment), **(replace or {})}
    for cell in nb.cells:
        if _gid(cell) in given and cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = given[_gid(cell)]
    return nb


def put(submitted: Path, student: str, assignment: str, content, name: str | None = None) -> Path:
    """Write ``content`` (a notebook, bytes or text) as ``submitted/<student>/<assignment>/<name>``."""
    path = Path(submitted) / student / assignment / (name or f"{assignment}.ipynb")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        nbformat.write(content, path)
    return path


def without(nb: nbformat.NotebookNode, *grade_ids: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if _gid(c) not in grade_ids]
    return nb


def cell(nb: nbformat.NotebookNode, grade_id: str):
    return next(c for c in nb.cells if _gid(c) == grade_id)


# ---------------------------------------------------------------- mutants, as data
@dataclass(frozen=True)
class Mutant:
    what: str  # the mistake, in the words of the issue
    code: str  # the whole solution cell as the student wrote it


CHECK_OF = {
    EX01: {"returns": "returns_check", "evaluate": "evaluate_check", "q_from_v": "q_from_v_check"},
    EX02: {"value_iteration": "value_iteration_check"},
    EX03: {"td0_update": "td0_update_check"},
    EX04: {"sarsa_target": "sarsa_target_check"},
    EX05: {"dqn_targets": "dqn_targets_check"},
    EX06: {"loss": "loss_check"},
    EX07: {"gae": "gae_check"},
    EX08: {"kl": "kl_check"},
    EX09: {"clip": "clip_check"},
    EX10: {"logprobs": "logprobs_check"},
    EX11: {"loss": "loss_check"},
    EX12: {"kl": "kl_check"},
    EX13: {"advantages": "advantages_check"},
    EX14: {"dpo": "dpo_check"},
}

_RETURNS = '''def discounted_returns(rewards, gamma, dones=None):
    rewards = np.asarray(rewards, dtype=np.float64)
    not_done = np.ones_like(rewards) if dones is None else 1.0 - np.asarray(dones, dtype=np.float64)
    G = np.zeros_like(rewards)
    g = np.zeros(rewards.shape[:-1])
    for t in {loop}:
        g = {update}
        G[..., t] = g
    return G
'''
_EVALUATE = '''def evaluate_policy(mdp, pi):
    r_pi = np.einsum("sa,sa->s", pi, mdp.R)
    P_pi = np.einsum({p_pi}, pi, mdp.P)
    live = ~mdp.terminal
    V = np.zeros(mdp.n_states)
    A = np.eye(live.sum()) {sign} mdp.gamma * P_pi[np.ix_(live, live)]
    V[live] = np.linalg.solve(A, r_pi[live])
    return V
'''
_Q = '''def q_from_v(mdp, V):
    Q = {q}
    Q[mdp.terminal] = 0.0
    return Q
'''

# Exercises 2 onwards: the whole cell, with the student's mistake.
_EX02_VALUE_ITERATION = '''def value_iteration(mdp, tol=1e-10):
    V = np.zeros(mdp.n_states)
    while True:
        Q = q_from_v(mdp, V)
        V_new = Q.mean(axis=1)
        change = np.max(np.abs(V_new - V))
        V = V_new
        if change < tol:
            return V, greedy_policy(q_from_v(mdp, V))
'''

_EX03_TD0_UPDATE = '''def td0_update(V, states, rewards, next_states, dones, alpha, gamma):
    V = np.array(V, dtype=np.float64)
    runs = np.arange(V.shape[0])
    target = rewards + gamma * V[runs, next_states]
    V[runs, states] += alpha * (target - V[runs, states])
    return V
'''

_EX04_SARSA_TARGET = '''def sarsa_target(rewards, q_next, next_actions, dones, gamma):
    return rewards + gamma * (1.0 - dones) * q_next.max(axis=1)
'''

_EX05_DQN_TARGETS = '''def dqn_targets(rewards, next_q_target, terminated, gamma):
    return rewards + gamma * next_q_target.max(dim=1).values
'''

_EX06_LOSS = '''def reinforce_loss(logp, returns, baseline, mask):
    weights = returns - baseline
    return -(logp * weights * mask).sum() / logp.shape[0]
'''

_EX07_GAE = '''def gae(rewards, values, gamma, lam, dones=None):
    delta = td_errors(rewards, values, lam, dones)
    not_done = np.ones_like(delta) if dones is None else 1.0 - np.asarray(dones, dtype=np.float64)
    advantages = np.zeros_like(delta)
    lastgaelam = np.zeros(delta.shape[:-1])
    for t in reversed(range(delta.shape[-1])):
        lastgaelam = delta[..., t] + gamma * lam * not_done[..., t] * lastgaelam
        advantages[..., t] = lastgaelam
    return advantages
'''

_EX08_KL = '''def categorical_kl(logits_p, logits_q):
    log_p = torch.log_softmax(logits_p, dim=-1)
    log_q = torch.log_softmax(logits_q, dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(dim=-1)
'''

_EX09_CLIP = '''def ppo_clip_loss(logp, old_logp, advantages, eps, mask=None):
    ratio = (logp - old_logp.detach()).exp()
    advantages = advantages.detach()
    objective = torch.maximum(ratio * advantages, torch.clamp(ratio, 1 - eps, 1 + eps) * advantages)
    if mask is None:
        return -objective.mean()
    mask = mask.to(objective.dtype)
    return -(objective * mask).sum() / mask.sum()
'''

_EX10_LOGPROBS = '''def sequence_logprobs(model, input_ids, attention_mask):
    logits = model(input_ids, attention_mask=attention_mask)
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)
    return picked * attention_mask
'''

_EX11_LOSS = '''def bradley_terry_loss(r_chosen, r_rejected):
    margin = r_rejected - r_chosen
    if isinstance(margin, torch.Tensor):
        return F.softplus(-margin).mean()
    return np.logaddexp(0.0, -margin).mean()
'''

_EX12_KL = '''def kl_penalty_rewards(logp, ref_logp, scores, completion_mask, beta):
    m = completion_mask.to(logp.dtype)
    rewards = -beta * (logp - ref_logp) * m
    rewards[:, -1] = rewards[:, -1] + scores
    return rewards
'''

_EX13_ADVANTAGES = '''def group_advantages(rewards, group_size, eps=1e-4):
    return (rewards - rewards.mean()) / (rewards.std(correction=0) + eps)
'''

_EX14_DPO = '''def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = policy_rejected_logps - ref_rejected_logps
    return -F.logsigmoid(chosen - rejected).mean()
'''

MUTANTS: dict[str, dict[str, list[Mutant]]] = {
    EX01: {
        "returns": [
            Mutant("missing done mask", _RETURNS.format(loop="reversed(range(rewards.shape[-1]))",
                                                        update="rewards[..., t] + gamma * g")),
            Mutant("off-by-one: the last step is never visited",
                   _RETURNS.format(loop="reversed(range(rewards.shape[-1] - 1))",
                                   update="rewards[..., t] + gamma * not_done[..., t] * g")),
        ],
        "evaluate": [
            Mutant("wrong axis: P_pi transposed", _EVALUATE.format(p_pi='"sa,sat->ts"', sign="-")),
            Mutant("wrong sign: I + gamma P_pi", _EVALUATE.format(p_pi='"sa,sat->st"', sign="+")),
        ],
        "q_from_v": [
            Mutant("wrong sign on the future", _Q.format(q="mdp.R - mdp.gamma * (mdp.P @ V)")),
            Mutant("wrong axis: V indexed by the current state", _Q.format(q='mdp.R + mdp.gamma * np.einsum("sat,s->sa", mdp.P, V)')),
        ],
    },
    # Exercises 2 onwards: one mutant of one cell each (every round is one more graded submission),
    # a mistake the chapter's check tests also reject, in a cell no other check depends on.
    EX02: {"value_iteration": [Mutant("mean instead of max: evaluates the random policy", _EX02_VALUE_ITERATION)]},
    EX03: {"td0_update": [Mutant("missing done mask: bootstraps from the next episode's first state", _EX03_TD0_UPDATE)]},
    EX04: {"sarsa_target": [Mutant("max instead of the taken action (that is Q-learning)", _EX04_SARSA_TARGET)]},
    EX05: {"dqn_targets": [Mutant("missing (1 - terminated) mask", _EX05_DQN_TARGETS)]},
    EX06: {"loss": [Mutant("forgot to detach the weights (returns - baseline)", _EX06_LOSS)]},
    EX07: {"gae": [Mutant("lambda and gamma swapped in the TD errors", _EX07_GAE)]},
    EX08: {"kl": [Mutant("reversed KL: KL(q || p)", _EX08_KL)]},
    EX09: {"clip": [Mutant("min and max swapped in the clipped objective", _EX09_CLIP)]},
    EX10: {"logprobs": [Mutant("off by one: token t scored by the logits at t, not t - 1", _EX10_LOGPROBS)]},
    EX11: {"loss": [Mutant("chosen and rejected swapped in the margin", _EX11_LOSS)]},
    EX12: {"kl": [Mutant("the score put on the last column, padding or not", _EX12_KL)]},
    EX13: {"advantages": [Mutant("standardised over the whole batch instead of each group", _EX13_ADVANTAGES)]},
    EX14: {"dpo": [Mutant("beta applied to the chosen side only", _EX14_DPO)]},
}


def mutant_rounds(assignment: str) -> list[dict[str, Mutant]]:
    """Round k takes each cell's k-th mutant (cells with fewer mutants repeat their last)."""
    table = MUTANTS.get(assignment, {})
    n = max((len(v) for v in table.values()), default=0)
    return [{cell_id: ms[min(k, len(ms) - 1)] for cell_id, ms in table.items()} for k in range(n)]


# ---------------------------------------------------------------- bad submissions
@dataclass
class Bad:
    name: str  # the student's folder name
    content: object  # notebook, bytes or text
    full: list[str] = field(default_factory=list)  # checks that keep their points
    zero: list[str] = field(default_factory=list)  # checks that score 0
    reason: str = ""  # regular expression the status must match
    filename: str | None = None  # default: the assignment's notebook name


def bad_submissions(course_dir: Path, outside: Path, secrets: list[Path], port: int) -> list[Bad]:
    """The issue's bad submissions, on exercise 1.

    ``outside`` is a file path the escaping submission tries to write, ``secrets``
    files it tries to read, ``port`` a local TCP port it tries to connect to.
    """
    a = EX01
    ok = answers(course_dir, a)
    all_checks = ["returns_check", "evaluate_check", "q_from_v_check"]
    out = []

    nb = solved(course_dir, a, {"evaluate": "def evaluate_policy(mdp, pi)\n    return np.zeros(mdp.n_states)\n"})
    out.append(Bad("syntax_error", nb, ["returns_check", "q_from_v_check"], ["evaluate_check"], r"SyntaxError"))

    nb = solved(course_dir, a, {
        # Sleeps rather than spins, so it does not slow the submissions graded beside it.
        "returns": "import time\n\ndef discounted_returns(rewards, gamma, dones=None):\n    while True:\n"
                   "        time.sleep(0.01)\n",
        # A bare except swallows the interrupt too: the grader must restart the kernel.
        "q_from_v": "import time\n\ndef q_from_v(mdp, V):\n    while True:\n        try:\n            time.sleep(0.05)\n"
                    "        except:\n            pass\n",
    })
    out.append(Bad("infinite_loops", nb, ["evaluate_check"], ["returns_check", "q_from_v_check"],
                   r"returns_check' timed out.*ignored the interrupt"))

    nb = solved(course_dir, a, {
        "returns": "import os\n\ndef discounted_returns(rewards, gamma, dones=None):\n    os._exit(3)\n",
        "q_from_v": "def q_from_v(mdp, V):\n    hog = []\n    while True:\n        hog.append(np.ones(10**7))\n",
    })
    out.append(Bad("kernel_exit_and_memory_hog", nb, ["evaluate_check"], ["returns_check", "q_from_v_check"],
                   r"kernel died while running this cell \(exit code 3\).*q_from_v_check: MemoryError"))

    nb = without(solved(course_dir, a), "imports", "evaluate_check", "q_from_v", "q_from_v_check")
    out.append(Bad("deleted_cells", nb, ["returns_check", "evaluate_check"], ["q_from_v_check"],
                   r"'imports' was deleted: restored.*'evaluate_check' was deleted: restored.*q_from_v_check: NameError"))

    nb = solved(course_dir, a, {"evaluate": MUTANTS[a]["evaluate"][0].code})
    retyped = cell(nb, "returns_check")
    retyped.cell_type = "markdown"
    retyped.pop("outputs", None)
    retyped.pop("execution_count", None)
    cell(nb, "evaluate_check").source = "print('all cases pass')  # the check, retyped by hand"
    out.append(Bad("retyped_grade_cells", nb, ["returns_check", "q_from_v_check"], ["evaluate_check"],
                   r"(?=.*'returns_check' was turned into a markdown cell)(?=.*'evaluate_check' was edited)"
                   r".*evaluate_check: AssertionError"))

    # Also warns on stderr while its check runs: nbgrader alone would give that check 0.
    warns = "import warnings\n\n" + ok["returns"].replace(
        "):\n", "):\n    warnings.warn('this is fine', RuntimeWarning)\n", 1)
    nb = solved(course_dir, a, {"returns": warns})
    cell(nb, "returns_check").metadata["nbgrader"]["points"] = 200
    nb.cells.append(nbformat.v4.new_code_cell("print('bonus')", metadata={"nbgrader": {
        "grade": True, "grade_id": "bonus", "points": 100, "solution": False, "locked": True, "schema_version": 3}}))
    out.append(Bad("invented_points_and_warnings", nb, all_checks, [], r"^nbgrader metadata removed from 1 cell\(s\)[^;]*$"))

    renamed = ok["returns"].replace("def discounted_returns(", "def discounted_return(")
    shape = _new_return(ok["evaluate"], "V.reshape(-1, 1)")
    wrong_type = _new_return(ok["q_from_v"], "Q.tolist()")
    nb = solved(course_dir, a, {"returns": renamed, "evaluate": shape, "q_from_v": wrong_type})
    out.append(Bad("renamed_and_wrong_types", nb, [], all_checks,
                   r"returns_check: NameError.*evaluate_check: AssertionError.*expected shape.*"
                   r"q_from_v_check: AssertionError.*expected a numpy array"))

    out.append(Bad("empty_file", b"", [], all_checks, r"the file is empty"))
    out.append(Bad("not_json", b"\x89PNG\r\n\x1a\n not a notebook", [], all_checks, r"not JSON"))
    other = solved(course_dir, a)
    other.metadata["course"] = {"generated_from": "solutions/ex99_other_topic.py"}
    out.append(Bad("other_assignment", other, [], all_checks, r"notebook of another assignment \(solutions/ex99"))
    unmarked = solved(course_dir, a)
    unmarked.metadata.pop("course", None)
    for c in unmarked.cells:
        if _gid(c):
            c.metadata["nbgrader"]["grade_id"] = "ex99_" + _gid(c)
    out.append(Bad("other_assignment_unmarked", unmarked, [], all_checks, r"none of ex01_mdp_bellman's cells"))
    out.append(Bad("wrong_file_name", solved(course_dir, a), [], all_checks,
                   r"no ex01_mdp_bellman.ipynb was handed in \(found: my_work.ipynb\)", filename="my_work.ipynb"))

    nb = solved(course_dir, a, {"returns": "for _ in range(20_000):\n    print('spam ' * 200)\n\n" + ok["returns"]})
    out.append(Bad("huge_output", nb, all_checks, [], r"'returns' printed too much"))
    big = solved(course_dir, a)
    big.cells.append(nbformat.v4.new_markdown_cell("x" * (3 * 2**20)))
    out.append(Bad("huge_file", big, [], all_checks, r"over the 2 MB limit"))

    # Markers are built at run time, so they appear in the feedback only if the code printed them.
    escape = f'''import os, socket
with open(os.path.expanduser("~/notes.txt"), "w") as f:  # the sandbox's own home: allowed
    f.write("fine")
for target in [{str(outside)!r}, "../../../../../escaped-relative.txt"]:
    try:
        with open(target, "w") as f:
            f.write("escaped")
        print("WRO" + "TE", target)
    except OSError as exc:
        print("write " + "blocked:", type(exc).__name__)
for secret in {[str(s) for s in secrets]!r} + ["../../../gradebook.db", "../../../source/{a}/{a}.ipynb"]:
    try:
        with open(secret, "rb") as f:
            print("LEA" + "KED", secret, f.read(10))
    except OSError as exc:
        print("read " + "blocked:", type(exc).__name__)
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    print("CONNEC" + "TED")
except OSError as exc:
    print("connect " + "blocked:", type(exc).__name__)
print("ENV" + "IRONMENT", sorted(os.environ))

''' + ok["returns"]
    out.append(Bad("writes_outside", solved(course_dir, a, {"returns": escape}), all_checks, [], r"^ok$"))
    return out


def _new_return(code: str, expression: str) -> str:
    """``code`` with its last ``return X`` replaced by ``return expression``."""
    lines = code.rstrip().split("\n")
    i = max(k for k, line in enumerate(lines) if line.strip().startswith("return "))
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = f"{indent}return {expression}"
    return "\n".join(lines) + "\n"


def write_all(submitted: Path, bads: list[Bad], assignment: str = EX01) -> None:
    for bad in bads:
        put(submitted, bad.name, assignment, bad.content, bad.filename)


def status_matches(status: str, pattern: str) -> bool:
    return re.search(pattern, status, flags=re.S) is not None
