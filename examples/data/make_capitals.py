"""Writes examples/data/capitals/{train,valid,test}.jsonl: chat records that ask for a
country's capital in one of several phrasings and answer in one fixed JSON form,
  {"country": "France", "capital": "Paris"}
which a chat model does not use on its own. Fine-tuning teaches the form; the countries of
valid.jsonl and test.jsonl are not in train.jsonl, so the answers to them show whether the
form carries over to new questions. Also writes examples/sample_dataset.json, the training
records of one phrasing as one JSON array (how many datasets ship), for `ft train quick`.
Deterministic (no randomness).
  python3 examples/data/make_capitals.py
"""
import json
import os

CAPITALS = [
    ("Afghanistan", "Kabul"), ("Albania", "Tirana"), ("Algeria", "Algiers"),
    ("Argentina", "Buenos Aires"), ("Armenia", "Yerevan"), ("Australia", "Canberra"),
    ("Austria", "Vienna"), ("Azerbaijan", "Baku"), ("Bangladesh", "Dhaka"),
    ("Belarus", "Minsk"), ("Belgium", "Brussels"), ("Bolivia", "Sucre"),
    ("Brazil", "Brasilia"), ("Bulgaria", "Sofia"), ("Cambodia", "Phnom Penh"),
    ("Cameroon", "Yaounde"), ("Canada", "Ottawa"), ("Chile", "Santiago"),
    ("China", "Beijing"), ("Colombia", "Bogota"), ("Croatia", "Zagreb"),
    ("Cuba", "Havana"), ("Cyprus", "Nicosia"), ("Czechia", "Prague"),
    ("Denmark", "Copenhagen"), ("Ecuador", "Quito"), ("Egypt", "Cairo"),
    ("Estonia", "Tallinn"), ("Ethiopia", "Addis Ababa"), ("Finland", "Helsinki"),
    ("France", "Paris"), ("Georgia", "Tbilisi"), ("Germany", "Berlin"),
    ("Ghana", "Accra"), ("Greece", "Athens"), ("Guatemala", "Guatemala City"),
    ("Hungary", "Budapest"), ("Iceland", "Reykjavik"), ("India", "New Delhi"),
    ("Indonesia", "Jakarta"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
    ("Ireland", "Dublin"), ("Israel", "Jerusalem"), ("Italy", "Rome"),
    ("Jamaica", "Kingston"), ("Japan", "Tokyo"), ("Jordan", "Amman"),
    ("Kazakhstan", "Astana"), ("Kenya", "Nairobi"), ("Kuwait", "Kuwait City"),
    ("Laos", "Vientiane"), ("Latvia", "Riga"), ("Lebanon", "Beirut"),
    ("Libya", "Tripoli"), ("Lithuania", "Vilnius"), ("Luxembourg", "Luxembourg"),
    ("Madagascar", "Antananarivo"), ("Malaysia", "Kuala Lumpur"), ("Mali", "Bamako"),
    ("Malta", "Valletta"), ("Mexico", "Mexico City"), ("Moldova", "Chisinau"),
    ("Mongolia", "Ulaanbaatar"), ("Morocco", "Rabat"), ("Mozambique", "Maputo"),
    ("Nepal", "Kathmandu"), ("Netherlands", "Amsterdam"), ("New Zealand", "Wellington"),
    ("Nicaragua", "Managua"), ("Niger", "Niamey"), ("Nigeria", "Abuja"),
    ("North Korea", "Pyongyang"), ("Norway", "Oslo"), ("Oman", "Muscat"),
    ("Pakistan", "Islamabad"), ("Panama", "Panama City"), ("Paraguay", "Asuncion"),
    ("Peru", "Lima"), ("Philippines", "Manila"), ("Poland", "Warsaw"),
    ("Portugal", "Lisbon"), ("Qatar", "Doha"), ("Romania", "Bucharest"),
    ("Russia", "Moscow"), ("Rwanda", "Kigali"), ("Saudi Arabia", "Riyadh"),
    ("Senegal", "Dakar"), ("Serbia", "Belgrade"), ("Singapore", "Singapore"),
    ("Slovakia", "Bratislava"), ("Slovenia", "Ljubljana"), ("Somalia", "Mogadishu"),
    ("South Africa", "Pretoria"), ("South Korea", "Seoul"), ("Spain", "Madrid"),
    ("Sri Lanka", "Colombo"), ("Sudan", "Khartoum"), ("Sweden", "Stockholm"),
    ("Switzerland", "Bern"), ("Syria", "Damascus"), ("Taiwan", "Taipei"),
    ("Tanzania", "Dodoma"), ("Thailand", "Bangkok"), ("Tunisia", "Tunis"),
    ("Turkey", "Ankara"), ("Uganda", "Kampala"), ("Ukraine", "Kyiv"),
    ("United Kingdom", "London"), ("United States", "Washington"), ("Uruguay", "Montevideo"),
    ("Uzbekistan", "Tashkent"), ("Venezuela", "Caracas"), ("Vietnam", "Hanoi"),
    ("Yemen", "Sanaa"), ("Zambia", "Lusaka"), ("Zimbabwe", "Harare"),
]

QUESTIONS = [
    "What is the capital of {}?",
    "Which city is the capital of {}?",
    "Name the capital city of {}.",
]


def record(country, capital, phrasing):
    answer = json.dumps({"country": country, "capital": capital})
    return {"messages": [{"role": "user", "content": QUESTIONS[phrasing].format(country)},
                         {"role": "assistant", "content": answer}]}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "capitals")
    os.makedirs(out, exist_ok=True)
    # Every eighth country is held out for test, the one after it for validation.
    splits = {"train": [], "valid": [], "test": []}
    for i, (country, capital) in enumerate(CAPITALS):
        split = "test" if i % 8 == 0 else "valid" if i % 8 == 1 else "train"
        phrasings = range(len(QUESTIONS)) if split == "train" else [i % len(QUESTIONS)]
        for p in phrasings:
            splits[split].append(record(country, capital, p))
    for name, records in splits.items():
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        print(name, len(records), "records")
    sample = [r for r in splits["train"] if r["messages"][0]["content"].startswith("What")]
    with open(os.path.join(os.path.dirname(out), "..", "sample_dataset.json"), "w") as f:
        json.dump(sample, f, indent=2)
        f.write("\n")
    print("sample_dataset.json", len(sample), "records")


if __name__ == "__main__":
    main()
