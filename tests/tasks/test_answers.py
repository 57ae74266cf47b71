from gcpo.tasks.answers import extract_answer, is_well_formed, tagged


def test_extract_reads_the_last_complete_pair():
    assert extract_answer("3 + 45 = 48.\n<answer>48</answer>") == "48"
    assert extract_answer("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert extract_answer("<answer>1</answer> then <answer>2") == "1"


def test_extract_none_without_a_pair_or_text():
    for text in ["48", "<answer>48", "48</answer>", "<answer>  </answer>", "</answer><answer>", ""]:
        assert extract_answer(text) is None, text


def test_well_formed_needs_one_pair_at_the_end():
    assert is_well_formed("so 48.\n<answer>48</answer>")
    assert is_well_formed("<answer>48</answer>\n")
    assert not is_well_formed("<answer>48</answer> and more")
    assert not is_well_formed("<answer>1</answer><answer>48</answer>")
    assert not is_well_formed("<answer></answer>")
    assert not is_well_formed("48")
    assert not is_well_formed("<answer>48")


def test_extract_is_linear_on_adversarial_text():
    assert extract_answer("<answer>" * 200_000 + "x</answer>") == "x"
    assert extract_answer("<answer>x" + "</answer>" * 200_000).startswith("x</answer>")
    assert tagged("7") == "<answer>7</answer>"
