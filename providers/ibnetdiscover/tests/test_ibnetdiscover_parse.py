"""parse(): the real dump, handmade dumps, every fatal case with its line number, and properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from volcano_topology_ibnetdiscover.parse import Fabric, ParseError, parse
from volcano_topology_ibnetdiscover.synthetic import fat_tree, render, render_blocks

SMALL = """#
# Topology file: handmade
#

vendid=0x2c9
devid=0xd2f0
sysimgguid=0x1
switchguid=0x1(1)
Switch	3 "S-0000000000000001"		# "MF0;leaf-a:MQM8700/U1" enhanced port 0 lid 1 lmc 0
[1]	"H-0000000000000010"[1](10) 		# "host1 mlx5_0" lid 10 4xHDR
[2]	"H-0000000000000011"[1](11) 		# "MT4123 ConnectX6   Mellanox Technologies" lid 11 4xHDR

vendid=0x2c9
devid=0x101b
sysimgguid=0x10
caguid=0x10
Ca	1 "H-0000000000000010"		# "host1 mlx5_0"
[1](10) 	"S-0000000000000001"[1]		# lid 10 lmc 0 "MF0;leaf-a:MQM8700/U1" lid 1 4xHDR

vendid=0x2c9
devid=0x101b
caguid=0x11
Ca	1 "H-0000000000000011"		# "MT4123 ConnectX6   Mellanox Technologies"
[1](11) 	"S-0000000000000001"[2]		# lid 11 lmc 0 "MF0;leaf-a:MQM8700/U1" lid 1 4xHDR
"""


def small_lines() -> list[str]:
    return SMALL.split("\n")


def with_line(number: int, text: str) -> str:
    lines = small_lines()
    lines[number - 1] = text
    return "\n".join(lines)


def outcome(text: str) -> Fabric | ParseError:
    try:
        return parse(text)
    except ParseError as exc:
        return exc


def fails_at(text: str) -> tuple[int, str]:
    with pytest.raises(ParseError) as caught:
        parse(text)
    assert f"line {caught.value.line}:" in str(caught.value)
    return caught.value.line, str(caught.value)


# -- the real dump ------------------------------------------------------------------------------


def test_director_parses_whole(director_text: str) -> None:
    fabric = parse(director_text)
    assert len(fabric.switches) == 400
    assert len(fabric.cas) == 2328
    assert sum(len(n.links) for n in fabric.nodes.values()) == 17446
    # The PuTTY banner (line 1) and the shell prompt after the last block (line 33821) are terminal noise.
    assert fabric.ignored == [1, 33821]
    leaf = fabric.nodes["0c42a10300a9b026"]
    assert (leaf.kind, leaf.ports, leaf.description, leaf.line) == (
        "switch",
        41,
        "MF0;sat11-0101-0927-20ib0:MQM8700/U1",
        12,
    )
    assert leaf.links[21].peer == "0c42a103008b5558" and leaf.links[21].peer_port == 20
    assert leaf.sysimgguid == "0c42a10300a9b026"
    hca = fabric.nodes["0c42a10300b9e396"]
    assert hca.description == "sat11-0101-0902-02ufm HCA-1"


def test_director_crlf_and_lf_give_the_same_fabric(director_text: str) -> None:
    assert "\r\n" in director_text
    assert parse(director_text) == parse(director_text.replace("\r\n", "\n"))


@pytest.mark.parametrize("back", [1, 2, 5, 30, 58, 59, 60, 61, 140, 300, 5000, 1_000_000])
def test_director_cut_anywhere_before_its_end_raises_with_a_line(director_text: str, back: int) -> None:
    end = director_text.index("\r\n\rsat11-0101-0902-02ufm")  # after the last port line comes the shell prompt
    cut = director_text[: end - back]
    line, _ = fails_at(cut)
    assert 1 <= line <= cut.count("\n") + 1


def test_director_without_the_trailing_prompt_is_whole(director_text: str) -> None:
    end = director_text.index("\r\n\rsat11-0101-0902-02ufm")
    assert parse(director_text[:end]).nodes.keys() == parse(director_text).nodes.keys()
    assert parse(director_text[: end + 2]).ignored == [1]


def test_director_missing_a_block_raises(director_text: str) -> None:
    start = director_text.index("vendid=0x2c9\r\ndevid=0x101b\r\nsysimgguid=0xc42a10300fb52ec")
    end = director_text.index("\r\n\r\n", start)
    with pytest.raises(ParseError) as caught:
        parse(director_text[:start] + director_text[end + 4 :])
    assert "its peer H-0c42a10300fb52ec has no block in the dump" in str(caught.value)


# -- handmade dumps -----------------------------------------------------------------------------


def test_small_dump() -> None:
    fabric = parse(SMALL)
    assert [n.guid for n in fabric.switches] == ["0000000000000001"]
    assert {n.description for n in fabric.cas} == {"host1 mlx5_0", "MT4123 ConnectX6   Mellanox Technologies"}
    assert fabric.ignored == []
    assert fabric.lines == len(SMALL.split("\n")) - 1


def test_whitespace_between_tokens_may_be_lost() -> None:
    squeezed = SMALL.replace("\t", "").replace(") ", ")").replace("Switch3", "Switch3")
    assert parse(squeezed) == parse(SMALL)
    compact = fat_tree()
    assert parse(render(render_blocks(compact, compact=True))).nodes.keys() == compact.nodes.keys()


def test_grouped_output_ext_ports_and_chassis_lines_are_accepted() -> None:
    grouped = SMALL.replace('[1]\t"H-0000000000000010"', '[1][ext 1]\t"H-0000000000000010"')
    grouped = grouped.replace("sysimgguid=0x1\n", "sysimgguid=0x1\t\t# Chassis 1 (director-1)\n")
    grouped = grouped.replace("#\n\nvendid", "#\n\nChassis 1 (guid 0x1)\n\n# Spine Nodes\nvendid", 1)
    fabric = parse(grouped)
    assert fabric.nodes["0000000000000001"].links[1].peer == "0000000000000010"
    assert fabric.ignored == [5]


def test_noise_outside_blocks_is_tolerated_and_listed() -> None:
    text = "=~=~ PuTTY log ~=~=\n" + SMALL + "admin@ufm (config) # "
    fabric = parse(text)
    assert fabric.ignored == [1, text.count("\n") + 1]


# -- fatal, with line numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text", "line", "message"),
    [
        (10, '[1]	"H-0000000000000010"[1](10)	# "host1 mlx5_0" lid 10 4x', 10, "cut short"),
        (10, '[1]	"H-0000000000000010"[1](10)	# "host1 mlx5_0"', 10, "cut short"),
        (10, '[1]	"H-00000000000000', 10, "malformed port line"),
        (10, '[9]	"H-0000000000000010"[1](10)	# "host1 mlx5_0" lid 10 4xHDR', 10, "outside 1..3"),
        (11, '[1]	"H-0000000000000011"[1](11)	# "x" lid 11 4xHDR', 11, "listed twice"),
        (9, 'Switch	3 "S-0000000000000001"		# "MF0;leaf-a:MQM8700/U1" enhanced port 0', 9, "cut short"),
        (9, 'Switch	3 "S-0000000000000001"		# "MF0;leaf-a:MQM', 9, "malformed node line"),
        (9, 'Switch	3 "H-0000000000000001"		# "x" enhanced port 0 lid 1 lmc 0', 9, "not a Switch"),
        (8, "switchguid=0x2(2)", 9, "differs from the header's"),
        (7, "sysimgguid=zz", 7, "not a hexadecimal"),
        (9, "", 5, "not followed by its node line"),
        (12, "vendid=0x2c9", 12, "not followed by its node line"),
        (16, "caguid=0x99", 17, "differs from the header's"),
        (18, 'Ca	1 "H-0000000000000010"		# "host1 mlx5_0"', 18, "appears twice"),
        (22, 'Ca	1 "H-0000000000000010"		# "again"', 22, "appears twice"),
    ],
)
def test_malformed_input_names_its_line(number: int, text: str, line: int, message: str) -> None:
    found, error = fails_at(with_line(number, text))
    assert found == line, error
    assert message in error


def test_port_line_outside_a_block() -> None:
    lines = small_lines()
    lines.insert(12, '[3]	"H-0000000000000012"[1](12)	# "host3" lid 12 4xHDR')  # after the empty line
    assert fails_at("\n".join(lines))[0] == 13


def test_noise_inside_a_port_list_ends_the_block_so_the_next_port_is_fatal() -> None:
    lines = small_lines()
    lines.insert(9, "some junk")
    line, error = fails_at("\n".join(lines))
    assert line == 11 and "outside a node block" in error


def test_a_file_ending_in_a_header_is_fatal() -> None:
    cut = SMALL[: SMALL.index("caguid=0x11")]
    line, error = fails_at(cut)
    assert line == 20 and "ends inside a node header" in error


def test_one_sided_cables_are_fatal() -> None:
    wrong_port = with_line(10, '[1]	"H-0000000000000010"[2](10)	# "host1 mlx5_0" lid 10 4xHDR')
    line, error = fails_at(wrong_port)
    assert line == 10 and "does not list its port 2" in error
    wrong_kind = with_line(10, '[1]	"S-0000000000000010"[1]	# "host1 mlx5_0" lid 10 4xHDR')
    assert "is a ca" in fails_at(wrong_kind)[1]
    crossed = with_line(18, '[1](10) 	"S-0000000000000001"[2]		# lid 10 lmc 0 "MF0;leaf-a" lid 1 4xHDR')
    assert "leads to" in fails_at(crossed)[1]


def test_no_switch_is_fatal() -> None:
    assert "no Switch block" in fails_at("")[1]
    assert "no Switch block" in fails_at("# just a comment\nhello\n")[1]
    only_ca = "\n".join(small_lines()[12:18])
    assert "no Switch block" in fails_at(only_ca)[1]


def test_errors_list_every_one_sided_cable_and_say_how_many_more() -> None:
    lines = small_lines()
    del lines[12:]  # every CA block gone: two ports name missing peers
    error = ParseError([(i, "x") for i in range(15, 0, -1)])
    assert error.line == 1 and str(error).endswith("(and 5 more)")
    with pytest.raises(ParseError) as caught:
        parse("\n".join(lines))
    assert [line for line, _ in caught.value.problems] == [10, 11]


# -- properties ---------------------------------------------------------------------------------

FABRIC = fat_tree(pods=2, leaves_per_pod=2, spines_per_pod=2, cores=1, hosts_per_leaf=2, rails=2)
DUMP = render(render_blocks(FABRIC))
CONTENT_END = len(DUMP.rstrip("\n"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=CONTENT_END - 1), st.booleans())
def test_random_truncation_never_yields_a_topology(cut: int, crlf: bool) -> None:
    text = DUMP[:cut]
    text = text.replace("\n", "\r\n") if crlf else text
    with pytest.raises(ParseError) as caught:
        parse(text)
    assert 1 <= caught.value.line <= text.count("\n") + 1


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_dropping_any_port_line_is_fatal(data: st.DataObject) -> None:
    lines = DUMP.split("\n")
    ports = [i for i, line in enumerate(lines) if line.startswith("[")]
    index = data.draw(st.sampled_from(ports))
    with pytest.raises(ParseError):
        parse("\n".join(lines[:index] + lines[index + 1 :]))


_TOKENS = st.sampled_from(
    [
        *['"S-', '"H-', '"R-', "[1]", "[", "]", "(", ")", "#", '"', "Switch", "Ca", "Rt", "\n", "\r\n", " ", "\t"],
        *["=", "vendid=0x2c9", "caguid=0x1", "lid 1 4xHDR", "0c42a1", "lmc 0"],
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(_TOKENS, max_size=60).map("".join)))
def test_garbage_gives_a_parse_error_or_a_fabric_never_anything_else(text: str) -> None:
    result = outcome(text)
    if isinstance(result, ParseError):
        assert result.problems and all(line >= 1 for line, _ in result.problems)
    else:
        assert isinstance(result, Fabric) and result.switches


@settings(max_examples=100, deadline=None)
@given(st.data(), st.text(max_size=80))
def test_a_line_replaced_by_garbage_never_crashes(data: st.DataObject, junk: str) -> None:
    lines = DUMP.split("\n")
    index = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    was_port = lines[index].startswith("[")
    lines[index] = junk.replace("\n", " ")
    try:
        parse("\n".join(lines))
    except ParseError:
        return
    assert not was_port or lines[index].strip().startswith("[")  # a port line can only be replaced by itself


def test_round_trip_of_a_generated_fabric() -> None:
    parsed = parse(DUMP)
    assert parsed.nodes.keys() == FABRIC.nodes.keys()
    for guid, node in FABRIC.nodes.items():
        got = parsed.nodes[guid]
        assert (got.kind, got.ports, got.description) == (node.kind, node.ports, node.description)
        assert {p: (k.peer, k.peer_port, k.peer_kind) for p, k in got.links.items()} == {
            p: (k.peer, k.peer_port, k.peer_kind) for p, k in node.links.items()
        }


def test_a_block_without_ports_is_fatal() -> None:
    lines = small_lines()
    del lines[17]  # the first Ca's only port line
    with pytest.raises(ParseError) as caught:
        parse("\n".join(lines))
    assert (17, "the ca at line 17 lists no port (truncated?)") in caught.value.problems
    assert caught.value.line == 10  # the switch's port 1 is not listed back either


def test_only_a_last_line_without_newline_needs_a_known_speed() -> None:
    newer = SMALL.replace('"host1 mlx5_0" lid 10 4xHDR', '"host1 mlx5_0" lid 10 4xGDR')
    assert parse(newer).nodes["0000000000000001"].links[1].peer == "0000000000000010"
    whole = SMALL.rstrip("\n")
    assert parse(whole).nodes.keys() == parse(SMALL).nodes.keys()
    line, error = fails_at(whole[:-1])  # "4xHDR" cut to "4xHD"
    assert line == 24 and "cut short" in error


def test_show_progress_lines_and_full_tails_are_accepted() -> None:
    """``ibnetdiscover -s`` prints its progress on stdout before the dump; ``--full`` ends port lines in ``s= w= v=``.

    Both formats as infiniband-diags prints them (libibnetdisc's dump_endnode, ibnetdiscover's out_*_port).
    """
    progress = (
        'DR path slid 0; dlid 0; 0 -> new CA {0000000000000010} portnum 1 lid 10-10 "host1 mlx5_0"\n'
        'DR path slid 0; dlid 0; 0,1 -> new Switch {0000000000000001} portnum 0 lid 1-1 "MF0;leaf-a:MQM8700/U1"\n'
    )
    full = "\n".join(line + " s=4 w=2 v=4" if line.startswith("[") else line for line in SMALL.split("\n"))

    def cables(fabric: Fabric) -> set[tuple[str, int, str, int]]:
        return {(n.guid, p, link.peer, link.peer_port) for n in fabric.nodes.values() for p, link in n.links.items()}

    assert cables(parse(progress + SMALL)) == cables(parse(SMALL))
    assert parse(progress + SMALL).ignored == [1, 2]
    assert cables(parse(full)) == cables(parse(SMALL))
    assert cables(parse(full.rstrip("\n"))) == cables(parse(SMALL))  # a last line without newline too
