#!/usr/bin/env python3
"""Write medchat's synthetic sample dataset of doctor-patient dialogues.

This script makes ``src/medchat/sample_data/dialogues.jsonl`` (shipped in the package): 420 short English chat
dialogues between a patient and a doctor, written in the style of online
consultation sites (patient question, doctor answer), about 48 common
conditions. About 85% are a single exchange and about 15% have two or three
exchanges, where the patient asks a follow-up question. Every line is one
JSON object::

    {"id": "sample-0001", "topic": "migraine",
     "messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}]}

All text comes from the templates in this file (no third-party data). Each
topic has several question templates, answer parts and follow-up exchanges
with slots (age, sex, duration, triggers, what was tried, ...); a fixed
random seed picks the combinations, so the output is byte-identical on every
run. The script checks its own output (counts, role order, word-count ranges,
unique questions) and fails loudly if a check does not hold.

The answers are general, cautious health information written for training
examples. They are not medical advice.

Run from the repository root (Python 3.10+, standard library only)::

    python scripts/make_sample_data.py            # writes src/medchat/sample_data/dialogues.jsonl
    python scripts/make_sample_data.py --out x.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

SEED = 20240611
N_DIALOGUES = 420
N_MULTI = 63  # 15% of the dialogues have follow-up exchanges ...
N_THREE = 21  # ... and a third of those have three exchanges instead of two
Q_WORDS = (20, 120)  # allowed word counts of user messages
A_WORDS = (50, 180)  # allowed word counts of assistant messages
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "medchat" / "sample_data" / "dialogues.jsonl"

# --------------------------------------------------------------------------
# Generic phrases shared by all topics
# --------------------------------------------------------------------------

GREET = ["Hi doctor,", "Hello doctor,", "Hello,", "Hi,", "Dear doctor,", "Respected doctor,",
         "Good evening doctor,", ""]
# "{me}" in a question template becomes one of these.
ME = ["I am {a} {age} year old {noun}", "I am {a} {age}-year-old {adj}", "I am a {noun} aged {age}"]
HIST = ["I have no known drug allergies.", "I do not smoke.", "I am not allergic to any medicine.",
        "I am a non-smoker."]
SIGNOFF = ["Please help.", "Please advise.", "Thanks in advance.", "Thank you.", "Kindly reply."]
OPEN = [
    "Hello, thanks for your query.",
    "Hi, thank you for posting your query.",
    "Hello. I have gone through your query and I understand your concern.",
    "Hello and welcome. I can understand your concern.",
    "Hi. Thanks for writing in with the details.",
    "Hello, thank you for the detailed description.",
]
CLOSE = [
    "Hope this helps. Take care.",
    "I hope this information is useful to you. Regards.",
    "Wish you good health.",
    "Feel free to write back if you have more questions.",
    "Take care and get well soon.",
    "Regards.",
]
FU_PRE = ["Thank you for the quick reply, doctor.", "Thanks a lot for explaining this so clearly.",
          "Okay doctor, I understand, thank you.", "Thank you, that makes me feel a bit better.",
          "Thanks for the reply. I have one more question.", "I see, thank you for the detailed answer.",
          "Thank you doctor, that was very helpful."]
FU_OPEN = ["Hello again.", "Hi, thanks for the follow-up question.", "Hello. Good question.",
           "Thanks for writing back.", "Hi.", "Hello, I understand your concern."]
FU_CLOSE = ["Take care.", "Hope this helps.", "Regards.", "Wish you good health.",
            "Please write back if you need more help.", ""]

SHORT = ["two days", "three days", "four days", "five days", "a week"]
MED = ["two weeks", "three weeks", "a month", "six weeks", "two months"]
LONG = ["three months", "four months", "six months", "eight months", "a year", "two years"]

# --------------------------------------------------------------------------
# Topics. Keys: slug; who ("any", "f", "m"); ages (min, max); s: slot values;
# q: question templates; ask: closing questions; why / do / warn: answer parts
# (explanation, advice, red flags); fu: follow-up (question, answer) pairs.
# A slot "x" is also available as "x_cap" (first letter upper-case).
# --------------------------------------------------------------------------

TOPICS: list[dict] = [
    dict(
        slug="tension-headache", who="any", ages=(19, 60),
        s=dict(dur=MED,
               where=["across my forehead", "on both sides of my head", "at the back of my head and neck",
                      "like a tight band around my head"],
               trigger=["long hours at the computer", "stress at work", "poor sleep", "skipping meals"],
               tried=["paracetamol", "ibuprofen", "a head massage", "drinking more water"]),
        q=["{me} and for {dur} now I have had a dull, pressing headache {where}. It usually starts in the "
           "afternoon and gets worse with {trigger}. There is no vomiting and my vision is normal. I have tried "
           "{tried}, which helps a little, but the headache comes back the next day.",
           "{me}. I get headaches almost every day for {dur} now. The pain is {where} and is more of a pressure "
           "than a throbbing. I have noticed it is worse with {trigger}. I have tried {tried} but it only helps "
           "for a few hours.",
           "{me} working in an office. For {dur} I have a constant heavy feeling {where}, and my neck and "
           "shoulders feel stiff. I think {trigger} may be the cause. No nausea, no sensitivity to light."],
        ask=["Could this be a brain tumor?", "Why is this happening and how can I stop it?",
             "Should I get a CT scan of my head?", "What is the best treatment for this?"],
        why=["From your description, in my opinion this is most likely a tension-type headache. It is the most "
             "common type of headache and is related to tightness in the muscles of the scalp, neck and shoulders, "
             "often made worse by stress, posture, screen time and irregular sleep. A pressing pain without "
             "vomiting or visual problems is reassuring and does not suggest a tumor.",
             "These symptoms fit well with tension-type headache. This headache is usually felt as a band or "
             "pressure, is not throbbing, and is linked to stress, posture and tiredness rather than to any serious "
             "disease. A scan is generally not needed when the examination is normal and there are no warning signs."],
        do=["I suggest regular breaks from the screen, keeping the monitor at eye level, drinking enough water and "
            "sleeping at fixed hours. Gentle neck stretches, a warm compress and relaxation exercises help many "
            "people. A simple painkiller can be used on bad days, but please avoid painkillers on more than two or "
            "three days a week, as overuse can itself cause daily headaches.",
            "Please keep a headache diary for two weeks, noting sleep, meals, caffeine and stress; this often shows "
            "the pattern. Regular exercise, better posture and less caffeine help. Get your eyes and blood pressure "
            "checked once. If the headaches stay frequent, your doctor can discuss preventive treatment."],
        warn=["Please consult a doctor urgently if you get a sudden severe headache, headache with fever and neck "
              "stiffness, weakness, confusion, loss of vision or repeated vomiting.",
              "Seek urgent care if the headache is the worst of your life, wakes you from sleep with vomiting, or "
              "comes with numbness, slurred speech or fever."],
        fu=[("How many painkillers can I safely take in a week? I am worried I am taking too many because the "
             "headache comes almost daily.",
             "Painkillers like paracetamol or ibuprofen should be taken only at the dose written on the pack and "
             "ideally on no more than two to three days per week. Using them more often for months can lead to "
             "medication overuse headache, where the tablets themselves keep the headache going. If you need them "
             "more often than that, it is better to see your doctor, who can look at preventive options and check "
             "for other causes."),
            ("Do I need any tests like a CT scan, an MRI or blood tests to rule out something serious? My family is "
             "quite worried.",
             "In a typical tension-type headache with a normal neurological examination, imaging is usually not "
             "required and does not change the treatment. Your doctor will check your blood pressure, eyes and "
             "nervous system. A scan is considered if there are warning signs such as a new headache after fifty, "
             "a change in pattern, weakness, seizures or headache that wakes you with vomiting. Blood tests may be "
             "done if you feel generally unwell.")],
    ),
    dict(
        slug="migraine", who="any", ages=(18, 50),
        s=dict(dur=LONG,
               side=["on the right side", "on the left side", "behind one eye",
                     "around my temple"],
               freq=["two or three times a month", "almost every week", "once or twice a month", "every few days"],
               extra=["I see zigzag lines before the pain starts", "light and noise bother me a lot",
                      "I feel sick and sometimes vomit",
                      "my eyes water and I have to lie down in a dark room"],
               tried=["paracetamol", "ibuprofen", "sleeping it off", "strong coffee"]),
        q=["{me} and I have been getting severe throbbing headaches {side} for {dur}. They come {freq} and last "
           "most of the day. During an attack {extra}. I have tried {tried} but it does not help much once the pain "
           "is established.",
           "{me}. For {dur} I get attacks of pounding headache {side}, {freq}. {extra_cap}. I have to leave work "
           "early on those days.",
           "{me}. My headaches started {dur} ago. They are {side} and throbbing, and {extra}. Usually they come "
           "{freq}. My mother also had similar headaches."],
        ask=["Is this migraine, and what treatment is available?", "How can I prevent these attacks?",
             "Is it dangerous to have such headaches?", "Should I see a neurologist?"],
        why=["In my opinion, your symptoms are typical of migraine. Migraine is a common neurological condition "
             "causing recurrent one-sided, throbbing headaches, often with nausea and sensitivity to light and noise, "
             "and sometimes with a visual aura before the pain. It often runs in families. It can be very disabling, "
             "but in itself it is not a dangerous disease.",
             "The pattern you describe, recurrent throbbing attacks lasting hours with the need to rest in a quiet, "
             "dark room, fits migraine rather than a serious structural problem. Common triggers include lack of "
             "sleep, missed meals, dehydration, stress, certain foods, bright light and hormonal changes."],
        do=["I suggest keeping a headache diary to find your triggers and keeping regular sleep, meals and fluids. "
            "Painkillers work best when taken early in the attack, at the dose on the label. If attacks are frequent "
            "or severe, a doctor can prescribe migraine-specific medicines for attacks and, if needed, a daily "
            "preventive medicine. Limit painkillers to a few days a week to avoid rebound headaches.",
            "Please see your doctor or a neurologist for an examination and a treatment plan. There are effective "
            "prescription medicines both for stopping attacks and for reducing how often they come. Meanwhile, rest "
            "in a dark, quiet room during attacks, avoid skipping meals, and reduce caffeine gradually."],
        warn=["Please go to emergency care if you have a sudden thunderclap headache, weakness or numbness on one "
              "side, difficulty speaking, fever with neck stiffness, or an aura lasting more than an hour.",
              "Seek urgent help if the headache pattern changes suddenly, or if a headache comes with confusion, "
              "fainting, a seizure or persistent loss of vision."],
        fu=[("Which medicines are used to prevent migraine, and what dose should I start with? I would like to "
             "avoid getting attacks every week.",
             "Several groups of medicines are used for migraine prevention, including some blood pressure tablets, "
             "certain antidepressants in low doses, some anti-seizure drugs and newer injections. The choice and "
             "dose depend on your age, other health conditions, pregnancy plans and side effects, so they must be "
             "prescribed and adjusted by your doctor. Prevention is usually considered when attacks happen on "
             "several days a month or are very disabling, and it takes a few weeks to see the benefit."),
            ("Can my diet or my coffee be causing these headaches? I drink about four cups a day and often skip "
             "breakfast.",
             "Yes, both may play a role. Skipping meals is a well known migraine trigger, so regular meals with some "
             "protein help. Large amounts of caffeine, or withdrawal when you miss your usual cups, can also trigger "
             "headaches. I suggest cutting down slowly over two to three weeks rather than stopping suddenly. Some "
             "people react to alcohol, aged cheese or processed meats, but triggers vary, so a diary is the best way "
             "to find yours.")],
    ),
    dict(
        slug="gerd", who="any", ages=(22, 65),
        s=dict(dur=MED,
               symptom=["a burning feeling in my chest after meals",
                        "sour fluid coming up into my throat, especially at night",
                        "a burning pain behind my breastbone and frequent burping",
                        "a bitter taste in my mouth in the morning and a hoarse voice"],
               food=["spicy food", "tea and coffee", "late dinners", "fried food", "lying down after eating"],
               tried=["an antacid syrup", "an antacid tablet from the pharmacy", "cold milk",
                      "sleeping with an extra pillow"]),
        q=["{me} and for {dur} I have been having {symptom}. It is clearly worse after {food}. I have tried {tried}, "
           "which gives relief for an hour or two. I am worried because my father had heart problems.",
           "{me}. For {dur} now I get {symptom}. My appetite is fine and I have not lost weight. The problem "
           "gets worse after {food}.",
           "{me} and I work night shifts. For {dur} I have been suffering from {symptom}. I have tried {tried} with "
           "partial relief, but it comes back every day."],
        ask=["Is this acidity or something more serious?", "What diet changes should I make?",
             "Do I need an endoscopy?", "How can I get rid of this permanently?"],
        why=["From your description, in my opinion you have gastroesophageal reflux disease, commonly called acid "
             "reflux. It happens when the valve between the food pipe and the stomach becomes lax and acid flows "
             "back up, causing heartburn, sour regurgitation and sometimes cough or hoarseness. It is very common "
             "and strongly influenced by diet, weight and meal timing.",
             "These symptoms are typical of acid reflux (GERD). Acid from the stomach moves up into the food pipe "
             "and irritates its lining. Large meals, late dinners, spicy and fatty food, caffeine, alcohol, smoking "
             "and extra weight around the abdomen all make it worse."],
        do=["I suggest smaller meals, finishing dinner at least three hours before bed, raising the head end of the "
            "bed by a few inches, and cutting down on the trigger foods you have noticed. Losing some weight if "
            "needed also helps a lot. Over-the-counter antacids can be used for occasional symptoms. If symptoms "
            "persist, your doctor may prescribe an acid-reducing medicine for a few weeks.",
            "Please avoid lying down after meals, reduce tea, coffee, fried and spicy food, and avoid tight clothing "
            "around the waist. Since {tried} helps only briefly, it would be reasonable to see your doctor, who may "
            "start a short course of acid-suppressing treatment and test for H. pylori infection if needed."],
        warn=["Please consult a doctor soon if you have difficulty swallowing, vomiting of blood, black stools or "
              "weight loss; these need an endoscopy. Chest pain with sweating or breathlessness should be treated as "
              "an emergency to rule out a heart problem.",
              "If the chest pain comes on exertion, spreads to the arm or jaw, or comes with sweating and "
              "breathlessness, please go to the emergency room at once. Trouble swallowing, black stools or weight "
              "loss also need prompt review."],
        fu=[("How long should I take the acid tablets that my doctor might prescribe, and is it safe to take them "
             "for a long time?",
             "Acid-reducing medicines are usually given for about four to eight weeks and then reduced to the lowest "
             "dose that controls symptoms, or used only when needed. The exact medicine and dose should be decided "
             "by your doctor. Long-term use is generally safe for most people when there is a clear reason, but it "
             "should be reviewed from time to time because it can affect the absorption of some nutrients. "
             "Lifestyle changes often allow people to cut down or stop."),
            ("Is it really necessary to do an endoscopy in my case, or can I just continue with medicines and diet "
             "changes?",
             "Endoscopy is not needed for everyone with reflux. It is usually advised if there are warning signs such "
             "as difficulty or pain on swallowing, vomiting blood, black stools, anemia or weight loss, or if "
             "symptoms start for the first time after the age of about fifty-five. It is also considered when "
             "symptoms do not improve with proper treatment. If none of these apply, a trial of treatment and "
             "lifestyle changes is reasonable.")],
    ),
    dict(
        slug="urinary-tract-infection", who="f", ages=(18, 60),
        s=dict(dur=SHORT,
               sym=["burning while passing urine and a frequent urge to go",
                    "pain at the end of urination and cloudy, smelly urine",
                    "lower abdominal pain and passing small amounts of urine very often",
                    "burning urination and a little blood in the urine"],
               tried=["drinking lots of water", "cranberry juice", "an alkaliser syrup from the chemist",
                      "a warm water bottle on my lower tummy"],
               uhist=["This is my second infection this year.", "I had a similar problem last year.",
                      "This is the first time this has happened.", "I recently got married."]),
        q=["{me} and for {dur} I have {sym}. There is no fever. I have tried {tried} but the symptoms are not "
           "settling. {uhist}",
           "{me}. For {dur} I have been having {sym}. {uhist} I am not pregnant as far as I know.",
           "{me}. I think I have a urine infection. For {dur} there has been {sym}. I have tried {tried}."],
        ask=["Which antibiotic should I take?", "Can this go away on its own?", "Why do I keep getting this?",
             "What tests should I do?"],
        why=["In my opinion, your symptoms suggest a lower urinary tract infection (cystitis). It is common in women "
             "because the urethra is short, allowing bacteria from the skin to reach the bladder. Triggers include "
             "low water intake, holding urine for long, sexual activity and, in some women, hormonal changes.",
             "Burning, frequency and urgency like this are most often due to a bladder infection caused by bacteria. "
             "Sometimes similar symptoms are caused by vaginal infections or sexually transmitted infections, so a "
             "proper test is useful."],
        do=["I suggest a urine routine and culture test, ideally before starting any antibiotic. Your doctor will "
            "prescribe a suitable antibiotic course based on your history and, if needed, the culture report. "
            "Meanwhile, drink plenty of water, do not hold urine for long, pass urine after intercourse, and avoid "
            "scented washes. Please do not take leftover antibiotics without advice.",
            "Please consult your doctor for a short antibiotic course; most uncomplicated bladder infections settle "
            "within a few days of treatment. A urine test helps choose the right medicine, especially if infections "
            "keep coming back. Drink enough fluids, and paracetamol can ease the discomfort. For repeated infections, "
            "your doctor may look for causes such as diabetes or stones."],
        warn=["Please seek urgent care if you develop fever, chills, pain in the back or side below the ribs, "
              "vomiting, or if you are pregnant, as these may mean a kidney infection needing prompt treatment.",
              "If you get a high fever, flank pain, vomiting or feel very unwell, please see a doctor the same day, "
              "as the infection may have spread to the kidneys."],
        fu=[("The burning is better after two days of the antibiotic my doctor gave me. Can I stop the tablets now "
             "since I feel fine?",
             "Please complete the full course exactly as your doctor prescribed, even if you feel better. Symptoms "
             "often improve within a day or two, but stopping early can leave some bacteria behind, which may cause "
             "the infection to come back and encourages resistance. If you develop side effects such as a rash, "
             "severe diarrhea or swelling, contact your doctor. If symptoms return after finishing, get a repeat "
             "urine culture."),
            ("I keep getting these infections every few months. What can I do to prevent them from coming back in "
             "the future?",
             "Recurrent urine infections are common and there are several helpful steps. Drink enough water through "
             "the day, pass urine regularly and soon after intercourse, wipe from front to back, and avoid scented "
             "soaps and douches. Treat constipation if present. Your doctor may check a urine culture with each "
             "episode, test your blood sugar, and arrange an ultrasound if needed. For frequent infections there "
             "are preventive options your doctor can discuss.")],
    ),
    dict(
        slug="seasonal-allergies", who="any", ages=(16, 55),
        s=dict(dur=MED,
               season=["every spring", "every year when the weather changes", "during the pollen season",
                       "after the monsoon"],
               sym=["continuous sneezing, a runny nose and itchy, watery eyes",
                    "a blocked nose, sneezing in the morning and an itchy throat",
                    "itching in my nose and eyes with a clear watery discharge",
                    "bouts of sneezing and a dripping nose"],
               tried=["an antihistamine tablet from the chemist", "steam inhalation", "a saline nasal spray",
                      "honey and warm water"]),
        q=["{me} and {season} I get {sym}. This time it has been going on for {dur}. I have tried {tried}, which "
           "helps a bit. There is no fever.",
           "{me}. For {dur} now I have {sym}. It is worse outdoors and in the morning. The same thing happens "
           "to me {season}.",
           "{me}. I am troubled by {sym} for {dur}. My mother has asthma. I have tried {tried} without much "
           "benefit."],
        ask=["Is this an allergy and how can I control it?", "Is there a permanent cure for this?",
             "Which test can tell me what I am allergic to?", "Will this turn into asthma?"],
        why=["From the history, in my opinion you have allergic rhinitis, commonly called hay fever. It is an "
             "allergic reaction of the nose lining to airborne particles such as pollen, dust mites, molds or animal "
             "dander. It tends to run in families and often goes along with asthma or eczema. The seasonal pattern "
             "you describe is typical of pollen allergy.",
             "Sneezing, itching and watery discharge without fever point towards allergic rhinitis rather than an "
             "infection. The immune system overreacts to harmless substances in the air and releases histamine, "
             "which causes these symptoms."],
        do=["I suggest avoiding triggers where possible: keep windows closed on high pollen days, shower and change "
            "clothes after being outdoors, and wash bedding regularly. Saline nasal rinses are safe and helpful. "
            "Non-drowsy antihistamines from the pharmacy can be taken as per the label. If symptoms persist, your "
            "doctor may prescribe a steroid nasal spray, which works well when used regularly.",
            "Please consult your doctor or an ENT specialist. A skin prick test or blood test can identify specific "
            "allergens. Treatment includes antihistamines, steroid nasal sprays and, for selected patients, allergen "
            "immunotherapy, which can reduce symptoms over the long term. Starting treatment a couple of weeks "
            "before your usual season often helps."],
        warn=["Please see a doctor soon if you develop wheezing, chest tightness or breathlessness, facial pain with "
              "thick colored discharge and fever, or nosebleeds.",
              "If you get shortness of breath, wheezing at night or a cough that does not settle, please get checked, "
              "as nasal allergy is often associated with asthma."],
        fu=[("Can I use the steroid nasal spray every day for the whole season? I am worried about steroid side "
             "effects.",
             "Steroid nasal sprays used at the recommended dose act mainly on the nose lining and very little is "
             "absorbed into the body, so they are considered safe for daily use through the allergy season for most "
             "adults. They work best when used regularly rather than only on bad days, and it can take a few days to "
             "reach full effect. Aim the spray slightly away from the middle of the nose to reduce irritation. Your "
             "doctor will advise how long to use it."),
            ("Which antihistamine is better for me? The one I took last week made me very sleepy at work.",
             "Older antihistamines commonly cause drowsiness. Newer, non-sedating antihistamines are available over "
             "the counter and cause much less sleepiness for most people. Take them at the dose printed on the pack "
             "and avoid driving until you know how they affect you. If one does not suit you, a pharmacist or doctor "
             "can suggest an alternative. If you need them every day for long periods, a steroid nasal spray may be "
             "a better option.")],
    ),
    dict(
        slug="asthma", who="any", ages=(16, 55),
        s=dict(dur=MED,
               sym=["wheezing and tightness in my chest at night",
                    "a dry cough that gets worse at night and early in the morning",
                    "shortness of breath when I climb stairs or exercise",
                    "a whistling sound while breathing and tightness in my chest"],
               trigger=["cold air", "dust while cleaning", "exercise", "a recent cold", "cigarette smoke"],
               ahist=["I had asthma as a child but it went away.", "I was never diagnosed with asthma before.",
                      "I have an inhaler that was given to me years ago.", "My brother has asthma."]),
        q=["{me} and for {dur} I have {sym}. It seems to be triggered by {trigger}. {ahist}",
           "{me}. {ahist} Lately, for {dur}, I get {sym}, especially with {trigger}. It is affecting my sleep.",
           "{me}. For {dur} I have been having {sym}. My doctor heard a wheeze and said it may be asthma. I am "
           "scared of using inhalers regularly."],
        ask=["Is this asthma?", "Will I have to use inhalers all my life?", "What tests should I get done?",
             "How can I control this?"],
        why=["In my opinion, your symptoms suggest asthma, a condition where the airways become inflamed and narrow "
             "in response to triggers such as allergens, cold air, infections, smoke and exercise. Symptoms "
             "typically vary over time and are often worse at night or early in the morning. Asthma can start or "
             "return in adulthood.",
             "Recurrent wheezing, night cough and chest tightness related to triggers are typical of asthma. The "
             "airways are sensitive and inflamed, and treatment aims to calm the inflammation rather than only "
             "relieve attacks."],
        do=["I suggest seeing a doctor for a lung function test (spirometry) to confirm the diagnosis. Asthma is "
            "treated with inhalers: a reliever for quick relief and, if symptoms are frequent, a daily preventer "
            "inhaler with a low dose of inhaled steroid. Inhaled medicines reach the lungs directly and are safe in "
            "the doses used. Ask your doctor to check your inhaler technique and give you a written action plan.",
            "Please consult a chest physician. After confirming asthma, your doctor will decide the right inhaler "
            "treatment. Many people need a regular preventer for some time, and the dose can often be reduced once "
            "control is good. Get the flu vaccine yearly, avoid smoke, and keep your reliever inhaler with you."],
        warn=["Please go to the emergency room immediately if you are too breathless to speak in full sentences, "
              "your lips turn bluish, or your reliever inhaler does not help or is needed every few hours.",
              "Seek urgent care if breathing becomes very difficult, you feel drowsy or confused, or the reliever "
              "gives little or no relief."],
        fu=[("How often is it okay to use the blue reliever inhaler? Some weeks I am using it almost every single "
             "day.",
             "If you need your reliever more than two or three times a week, or wake at night with asthma symptoms, "
             "your asthma is not well controlled. In that case the answer is usually not to use more reliever, but to "
             "start or adjust regular preventer treatment, which your doctor will prescribe. Please book a review "
             "soon, bring your inhalers along, and ask for your technique to be checked."),
            ("Can I continue going to the gym and running, or will exercise make my asthma worse over time?",
             "Yes, regular exercise is good for people with asthma, and most can exercise normally once the asthma "
             "is well controlled. Warm up gradually, avoid very cold, dry air if possible, and carry your reliever "
             "inhaler. Some people are advised to use the reliever a few minutes before exercise; ask your doctor if "
             "this applies to you. If exercise regularly causes symptoms despite this, your treatment needs review.")],
    ),
    dict(
        slug="eczema", who="any", ages=(16, 50),
        s=dict(dur=LONG,
               site=["on the inside of my elbows", "behind my knees", "on my hands", "on my neck and face"],
               sym=["very itchy, dry and red patches", "rough, scaly patches that crack and sometimes ooze",
                    "dry itchy patches that have become dark and thick from scratching"],
               trigger=["cold weather", "hot showers", "washing dishes", "stress", "a new soap"],
               tried=["coconut oil", "a moisturizing lotion", "an antifungal cream",
                      "a cream from the chemist whose name I do not know"]),
        q=["{me} and I have {sym} {site} for {dur}. It gets worse with {trigger}. I had similar skin problems as a "
           "child. I have tried {tried} without much improvement.",
           "{me}. For {dur} I have {sym} {site}. The itching is worse at night and I scratch in my sleep. I have "
           "tried {tried}.",
           "{me}. I have had {sym} {site} for {dur}. It flares up with {trigger}. I also have hay fever."],
        ask=["What is this and will it go away?", "Which cream should I use?", "Is it contagious?",
             "Do I need to avoid any foods?"],
        why=["From your description, in my opinion this is atopic eczema (atopic dermatitis). It is a common, "
             "non-contagious condition in which the skin barrier is weak, so the skin loses moisture and becomes "
             "dry, itchy and inflamed. It is often linked with asthma and hay fever and tends to flare with soaps, "
             "heat, sweat, stress and dry weather.",
             "These features suggest eczema, an inflammatory skin condition that is not infectious. The itch-scratch "
             "cycle makes the skin thicker and more irritated. Contact with irritants such as detergents or a "
             "specific allergen can cause similar changes, so your doctor will consider that too."],
        do=["I suggest a thick, fragrance-free moisturizer used generously at least twice a day and right after "
            "bathing. Use lukewarm water, a mild soap substitute and cotton clothing, and keep nails short. For "
            "flares, your doctor may prescribe a steroid cream of suitable strength for a short period. Please avoid "
            "unknown mixed creams from the chemist, as some contain strong steroids that can harm the skin.",
            "Please consult a dermatologist for examination. Regular moisturizing is the most important long-term "
            "treatment. Prescription anti-inflammatory creams are used during flares and then reduced. An "
            "antihistamine at night can help sleep if itching is severe. Food avoidance is usually not needed in "
            "adults unless a specific food clearly causes a reaction."],
        warn=["Please see a doctor promptly if the skin becomes very painful, develops yellow crusts, pus or "
              "spreading redness, or if you get fever or clusters of painful blisters, as these may mean infection.",
              "If you notice oozing with honey-colored crusts, punched-out painful sores or fever, please get seen "
              "quickly, as infected eczema needs treatment."],
        fu=[("How long can I use the steroid cream the doctor gave me? I have read that steroids make the skin "
             "thin.",
             "When used correctly, steroid creams are safe and effective. They are usually applied once or twice "
             "daily to the affected areas only, for short periods during flares, and then stopped or reduced as the "
             "skin settles, as directed by your doctor. Thinning of the skin happens mainly with strong creams used "
             "for long periods, especially on the face and skin folds. Continue moisturizers all the time, even when "
             "the skin is clear."),
            ("Should I change my diet or stop milk and wheat? Someone told me that eczema comes from food allergy.",
             "In adults, food allergy is rarely the main cause of eczema, and strict diets without proper testing can "
             "lead to nutritional problems without improving the skin. If you notice a clear reaction such as hives, "
             "lip swelling or a flare within hours of a particular food, mention it to your doctor, who may arrange "
             "allergy testing. Otherwise, focus on skin care, moisturizers and avoiding irritants like harsh soaps.")],
    ),
    dict(
        slug="acne", who="any", ages=(15, 28),
        s=dict(dur=LONG,
               kind=["painful red pimples on my cheeks and jaw", "blackheads and whiteheads on my forehead and nose",
                     "pimples on my face and back", "deep painful bumps on my chin that leave dark marks"],
               tried=["face washes from the market", "home remedies like lemon and toothpaste",
                      "a benzoyl peroxide gel", "many different creams"],
               extra=["It is affecting my confidence.", "I also have very oily skin.",
                      "It gets worse before my exams.", "I have started getting dark spots after the pimples heal."]),
        q=["{me} and I have been suffering from {kind} for {dur}. I have tried {tried} but nothing works for long. "
           "{extra}",
           "{me}. For {dur} now I keep getting {kind}. {extra} Please suggest a good treatment.",
           "{me}. My acne started {dur} ago with {kind}. I have tried {tried}. {extra}"],
        ask=["How can I get clear skin?", "Which treatment is best for me?", "Will these marks go away?",
             "Do I need to see a dermatologist?"],
        why=["In my opinion, you have acne vulgaris, which is very common in teenagers and young adults. It happens "
             "when oil glands become blocked and inflamed, and skin bacteria add to the inflammation. Hormones, "
             "genetics, oily cosmetics and squeezing the pimples can make it worse. Diet plays a smaller role, though "
             "some people find sugary foods and milk make it worse.",
             "Your description fits acne. Blackheads and whiteheads are blocked pores, while red and deep painful "
             "lumps are inflamed lesions that are more likely to leave marks. Acne is a medical condition with "
             "effective treatments, so it is worth treating properly rather than trying many products."],
        do=["I suggest washing your face twice a day with a gentle cleanser, using an oil-free moisturizer and "
            "sunscreen, and not squeezing pimples. Over-the-counter benzoyl peroxide or adapalene gel can help mild "
            "acne; start with a small amount every other night, as they can cause dryness. Please avoid toothpaste, "
            "lemon and similar remedies, which irritate the skin. Give any treatment eight to twelve weeks.",
            "Please consult a dermatologist, because deep painful acne can scar. Depending on severity, treatment "
            "may include prescription creams, antibiotic tablets for a limited time, hormonal treatment in some "
            "women, or isotretinoin for severe cases, which needs careful monitoring. Dark marks fade slowly once "
            "acne is controlled, and sunscreen helps them fade."],
        warn=["See a doctor soon if you develop large painful cysts or scarring, or if acne comes with other new "
              "symptoms such as sudden weight change or excess hair growth.",
              "If acne is affecting your mood or self-confidence a lot, please speak to your doctor, as effective "
              "treatment is available."],
        fu=[("How long will it take for the cream to work? I have been using it for two weeks and my skin is "
             "actually a bit worse.",
             "This is quite common. Acne creams and gels often cause some dryness and redness, and sometimes an "
             "initial flare, during the first few weeks. Real improvement usually takes eight to twelve weeks of "
             "regular use. Use a pea-sized amount for the whole face, apply it on dry skin, and use a gentle "
             "moisturizer. If irritation is severe, use it every other night. If there is no improvement after three "
             "months, see your dermatologist."),
            ("Will my diet affect my acne? Should I stop eating chocolate and drinking milk completely?",
             "Diet has a modest effect in some people. There is some evidence that sugary foods and large amounts of "
             "milk may worsen acne in some individuals, but chocolate alone is not proven to be a major cause. A "
             "balanced diet with fruits and vegetables and fewer sugary snacks is reasonable. Avoid very strict "
             "diets; regular, proper treatment will have a much bigger effect than food changes.")],
    ),
    dict(
        slug="lower-back-pain", who="any", ages=(22, 60),
        s=dict(dur=SHORT + MED[:3],
               cause=["after lifting a heavy box", "after a long drive", "after bending to pick something up",
                      "without any injury", "after starting a new gym routine"],
               feature=["the pain stays in the lower back and does not go to the legs",
                        "the pain sometimes goes to my buttock",
                        "it is worse in the morning and when I sit for long",
                        "it gets better when I lie down"],
               tried=["a pain relief gel", "a hot water bag", "paracetamol", "rest in bed for two days"],
               job=["I have a desk job", "I work as a driver", "I work in a warehouse",
                    "I am a teacher and stand for long hours"]),
        q=["{me}. I developed lower back pain {cause} and it has been {dur} now. {feature_cap}. I have tried "
           "{tried}. {job_cap}.",
           "{me} and {job}. For {dur} I have pain in my lower back which started {cause}. {feature_cap}. There is no "
           "numbness.",
           "{me}. My lower back has been hurting for {dur}, {cause}. I have tried {tried} but it still hurts when I "
           "bend. {feature_cap}."],
        ask=["Is this a slipped disc?", "Should I get an MRI?", "When will this pain go away?",
             "What exercises should I do?"],
        why=["From your description, in my opinion this is mechanical lower back pain, most likely a muscle or "
             "ligament strain. It is very common and in most people improves within a few weeks. The absence of leg "
             "weakness, numbness or bladder problems is reassuring. Pain that spreads to the buttock can occur with "
             "muscle strain and does not necessarily mean a slipped disc.",
             "Most lower back pain like yours comes from strained muscles, ligaments or joints of the spine, often "
             "related to lifting, posture or prolonged sitting. An MRI is usually not needed in the first six weeks "
             "unless there are warning signs, because the findings rarely change treatment."],
        do=["I suggest staying as active as you can, since prolonged bed rest slows recovery. Use heat on the area, "
            "and a simple painkiller or anti-inflammatory gel as per the label if needed. Gentle walking and "
            "stretching, and later core strengthening exercises, are very helpful. Take short breaks from sitting "
            "and lift with bent knees. A physiotherapist can guide an exercise program.",
            "Please continue normal activities within comfort and avoid heavy lifting for a while. Alternate heat "
            "and gentle movement. Over-the-counter painkillers at label doses are usually enough; ask your doctor "
            "before using anti-inflammatories if you have stomach, kidney or heart problems. If the pain is not "
            "improving after four to six weeks, see a doctor or physiotherapist."],
        warn=["Please seek urgent care if you develop numbness around the groin or buttocks, difficulty passing urine "
              "or controlling bowels, weakness in the legs, fever, or pain after a significant fall.",
              "Urgent assessment is needed if there is leg weakness, loss of bladder or bowel control, numbness in "
              "the saddle area, unexplained weight loss, fever, or a history of cancer."],
        fu=[("Which exercises are safe for me to do now? I am scared that bending will make the pain worse.",
             "It is natural to be cautious, but gentle movement helps healing. Start with walking for ten to twenty "
             "minutes a few times a day, pelvic tilts and knee-to-chest stretches lying on your back, and gentle "
             "cat-camel movements on hands and knees. Move within a comfortable range and increase slowly. Mild "
             "discomfort is acceptable, but stop if pain shoots down the leg. A physiotherapist can give you a "
             "tailored program."),
            ("The pain is now going down my left leg to the foot with some tingling. Does this change anything?",
             "Pain spreading below the knee with tingling suggests irritation of a nerve root, called sciatica, often "
             "due to a disc bulge. Many cases still improve with time, activity and physiotherapy, but you should see "
             "your doctor for an examination of your leg strength, reflexes and sensation. Please go to emergency "
             "care at once if you notice leg weakness, numbness around the groin, or problems with bladder or bowel "
             "control.")],
    ),
    dict(
        slug="knee-osteoarthritis", who="any", ages=(45, 72),
        s=dict(dur=LONG,
               knee=["my right knee", "my left knee", "both my knees"],
               feature=["when climbing stairs", "after walking for some time", "when I get up from sitting",
                        "when I sit cross-legged"],
               extra=["There is mild swelling in the evening.", "I hear a cracking sound when I bend.",
                      "The knee feels stiff in the morning for a few minutes.", "I am a little overweight."],
               tried=["a knee cap", "massage with a pain relief oil", "calcium tablets", "a pain balm"]),
        q=["{me}. I have had pain in {knee} for {dur}, mostly {feature}. {extra} I have tried {tried}.",
           "{me}. For {dur} now I am having pain in {knee} {feature}. {extra} My doctor said it may be "
           "arthritis.",
           "{me}. For {dur} I have been getting pain in {knee} {feature}. {extra} I want to avoid surgery if "
           "possible."],
        ask=["Is this arthritis and what can I do?", "Do I need a knee replacement?",
             "What exercises are good for my knees?", "Should I take supplements for my joints?"],
        why=["In my opinion, at your age these symptoms are most likely due to osteoarthritis of the knee, which is "
             "wear and tear of the joint cartilage. Typical features are pain on stairs and after activity, short "
             "morning stiffness and crackling on movement. Extra body weight, previous injuries and weak thigh "
             "muscles increase the load on the knee.",
             "Your description fits knee osteoarthritis, a very common condition with age. The cartilage becomes "
             "thinner and the joint may become mildly swollen after activity. An X-ray can confirm it, but treatment "
             "is guided mainly by symptoms and function."],
        do=["I suggest strengthening the thigh muscles with exercises such as straight leg raises and mini squats, "
            "low-impact activity like cycling, swimming or walking on level ground, and losing weight if needed, "
            "since every kilogram lost reduces the load on the knee. Paracetamol or an anti-inflammatory gel at label "
            "doses can help. Avoid squatting and sitting cross-legged.",
            "Please consult an orthopedic doctor for examination and an X-ray. Most people improve with exercise, "
            "weight management and simple pain relief; supplements like glucosamine have limited evidence. "
            "Injections may be considered for flares, and knee replacement is reserved for severe pain that limits "
            "daily life despite other treatment."],
        warn=["Please see a doctor promptly if the knee becomes hot, red and very swollen, if you have fever, if you "
              "cannot bear weight, or if the knee locks or gives way.",
              "A suddenly hot, swollen knee, or being unable to walk after a twist or fall, needs urgent assessment."],
        fu=[("Is it safe for me to take painkillers every day for my knee pain? I also have high blood pressure.",
             "Paracetamol at the label dose is generally the safer option for regular use in most adults. "
             "Anti-inflammatory tablets can raise blood pressure and affect the kidneys and stomach, so with high "
             "blood pressure please check with your doctor before using them regularly. Anti-inflammatory gels "
             "applied on the knee are absorbed much less into the body and are a good option. Your doctor can advise "
             "the safest plan for you."),
            ("Will walking daily damage my knee further? Some people told me I should rest it completely.",
             "Complete rest is not recommended for osteoarthritis. Regular, moderate activity actually keeps the joint "
             "healthier and the muscles stronger. Walk on flat ground at a comfortable pace, wear cushioned shoes and "
             "build up gradually. If the knee hurts more for more than a couple of hours after a walk, reduce the "
             "distance a little next time. Cycling and swimming are good alternatives on bad days.")],
    ),
    dict(
        slug="anxiety", who="any", ages=(18, 50),
        s=dict(dur=MED[2:] + LONG[:3],
               sym=["constant worry about my health and family", "restlessness and a racing mind at night",
                    "a feeling of tension all the time with a tight stomach",
                    "overthinking about every small thing and irritability"],
               body=["a fast heartbeat", "tension headaches", "trouble falling asleep",
                     "loose stools when I am stressed"],
               life=["after changing jobs", "after a stressful period at work", "after a family member fell ill",
                     "without any clear reason"]),
        q=["{me}. For {dur} I have been having {sym}, along with {body}. It started {life}. I find it hard to "
           "concentrate at work.",
           "{me} and I feel anxious almost every day for {dur}. I have {sym} and {body}. My blood tests and ECG were "
           "normal.",
           "{me}. {life_cap}, I started struggling with {sym}, and it has been {dur} now. I also get {body}. I do "
           "not want to become dependent on medicines."],
        ask=["Is this an anxiety disorder?", "Can this be treated without medicines?",
             "Will I have to take tablets for life?", "What can I do to feel normal again?"],
        why=["I can understand how distressing this is. In my opinion, your symptoms suggest an anxiety disorder, "
             "most likely generalized anxiety. Persistent worry that is hard to control, muscle tension, sleep "
             "problems and physical symptoms like a racing heart are common. It is a real and treatable condition, "
             "not a weakness.",
             "From what you describe, anxiety seems to be the main problem. Anxiety affects both the mind and the "
             "body, which is why you notice physical symptoms along with the worry. Basic tests such as thyroid "
             "function, a blood count and an ECG help rule out physical causes."],
        do=["I suggest regular physical exercise, fixed sleep timings, less caffeine and alcohol, and daily practice "
            "of slow breathing or relaxation. Talking therapy, particularly cognitive behavioral therapy, is very "
            "effective for anxiety and teaches skills to manage worry. If symptoms are severe, a doctor may suggest "
            "medicines; the commonly used ones are not habit forming and are usually taken for a limited period.",
            "Please consult a psychiatrist or psychologist for a proper assessment. Treatment can include "
            "counselling, cognitive behavioral therapy, lifestyle changes and, where needed, medication prescribed "
            "by a doctor. Many people improve significantly within a few months. Avoid self-medicating with sleeping "
            "pills or alcohol, which can make anxiety worse."],
        warn=["If you ever have thoughts of harming yourself or feel you cannot cope, please contact emergency "
              "services or a crisis helpline immediately, or go to the nearest hospital.",
              "Please seek urgent help if you have chest pain with breathlessness that is different from your usual "
              "symptoms, or any thoughts of self-harm."],
        fu=[("My doctor mentioned starting a tablet for anxiety. What dose is usually given and how soon will it "
             "start working?",
             "The dose depends on the specific medicine, your age, other health conditions and other medicines you "
             "take, so it must be decided and adjusted by your doctor. Commonly used anti-anxiety medicines are "
             "started at a low dose and increased slowly if needed. They typically take two to six weeks to show full "
             "effect, and mild early side effects often settle. Do not stop them suddenly; reduce them only with your "
             "doctor's guidance."),
            ("Are there any exercises or techniques that I can do at home when I feel the anxiety building up?",
             "Yes. Slow breathing helps a lot: breathe in gently through the nose for four counts and out for six "
             "counts for a few minutes. Grounding, where you name things you can see, hear and touch, brings "
             "attention back to the present. Setting aside a fixed worry time each day, regular exercise and limiting "
             "news and social media can also help. Self-help books and apps based on cognitive behavioral therapy "
             "are useful alongside professional help.")],
    ),
    dict(
        slug="insomnia", who="any", ages=(20, 65),
        s=dict(dur=MED[2:] + LONG[:4],
               pattern=["I take more than two hours to fall asleep",
                        "I fall asleep fine but wake up at 3 am and cannot sleep again",
                        "I wake up many times during the night",
                        "I sleep only four to five hours and feel tired all day"],
               habit=["I use my phone in bed", "I drink tea in the evening", "my work timings keep changing",
                      "I nap in the afternoon"],
               tried=["warm milk at night", "melatonin from the pharmacy", "reading before bed",
                      "a sleeping tablet that a friend gave me"]),
        q=["{me}. For {dur} I have been having trouble sleeping. {pattern_cap}. I admit that {habit}. I have tried "
           "{tried}.",
           "{me}. It has been {dur} that {pattern}. During the day I feel tired and irritable. I have tried {tried} "
           "but it does not help much.",
           "{me}. My problem is sleep. {pattern_cap}, and this has been going on for {dur}. Also, {habit}."],
        ask=["Please suggest a good sleeping pill.", "How can I get normal sleep again?",
             "Is this harmful to my health?", "What is causing this?"],
        why=["In my opinion, you are suffering from insomnia. It is very common and is often triggered by stress, "
             "irregular schedules, caffeine, late-night screen use or worry about sleep itself, which then keeps the "
             "problem going. Sometimes it is linked to anxiety, low mood, pain, thyroid problems or sleep apnea, so "
             "these should be considered.",
             "Difficulty falling or staying asleep for several weeks is called insomnia. Over time the bed becomes "
             "linked with being awake and worrying, which keeps the cycle going. The good news is that it usually "
             "responds well to changes in sleep habits."],
        do=["I suggest a fixed wake-up time every day including weekends, getting out of bed if you cannot sleep "
            "after about twenty minutes, no screens for an hour before bed, no caffeine after midday, and no daytime "
            "naps. Keep the bedroom dark, quiet and cool. Cognitive behavioral therapy for insomnia is the most "
            "effective long-term treatment. Please do not take sleeping tablets from friends.",
            "Please see your doctor to check for causes such as anxiety, depression, pain or breathing problems "
            "during sleep. Sleeping pills may help for a few nights but lose effect and can cause dependence, so "
            "they are not a long-term solution. Regular exercise earlier in the day, a relaxing bedtime routine and "
            "limiting alcohol all help."],
        warn=["Please consult a doctor soon if you snore loudly with pauses in breathing, feel sleepy while "
              "driving, or feel persistently low or hopeless.",
              "If you fall asleep during the day at dangerous times, such as while driving, or have low mood with "
              "thoughts of self-harm, please seek help urgently."],
        fu=[("Is melatonin safe to take every night for a long time, and how much of it should I take?",
             "Melatonin is generally considered safe for short-term use in adults and may help especially when the "
             "body clock is shifted, such as with jet lag or a late sleeping pattern. Its rules of sale and "
             "recommended doses vary by country, so follow the product label or your pharmacist's advice, and "
             "discuss long-term use with your doctor. It is not a strong sleeping pill, and good sleep habits remain "
             "the main treatment."),
            ("I wake up tired even after eight hours in bed, and my partner says I snore very loudly. Is this "
             "related?",
             "Yes, this could be important. Loud snoring with tiredness despite enough time in bed can be a sign of "
             "obstructive sleep apnea, where the airway repeatedly narrows during sleep and disturbs its quality. It "
             "is more common with extra weight, alcohol use and a thick neck. Please see your doctor, who may arrange "
             "a sleep study. Treatment can greatly improve energy levels and reduces risks to the heart.")],
    ),
    dict(
        slug="hypothyroidism", who="any", ages=(25, 60),
        s=dict(dur=MED[2:] + LONG[:4],
               sym=["tiredness, weight gain and feeling cold", "hair fall, dry skin and constipation",
                    "low energy and puffiness of my face", "low mood, slowness and muscle aches"],
               report=["my TSH came high on a blood test", "my TSH is 8 and T4 is normal",
                       "my doctor said I have an underactive thyroid",
                       "the report showed high TSH and positive antibodies"]),
        q=["{me}. For {dur} I have been having {sym}. I got some blood tests done and {report}. I have not started "
           "any treatment yet.",
           "{me}. Recently {report}. I have had {sym} for {dur}. Will I need to take tablets for life?",
           "{me} and I have been feeling unwell for {dur} with {sym}. My friend suggested a thyroid check, "
           "and {report}."],
        ask=["What should I do now?", "Can this be cured with diet?", "What does this report mean?",
             "Is this serious?"],
        why=["From your symptoms and report, in my opinion this suggests hypothyroidism, where the thyroid gland "
             "does not make enough hormone. The most common cause is an autoimmune condition called Hashimoto's "
             "thyroiditis. Low thyroid hormone slows down the body's metabolism, which explains tiredness, weight "
             "gain, dry skin, constipation and feeling cold.",
             "A raised TSH means the pituitary gland is pushing a sluggish thyroid to work harder. When thyroid "
             "hormone is also low, it is called overt hypothyroidism; when only TSH is mildly raised, it is called "
             "subclinical hypothyroidism, and the need for treatment depends on the level, symptoms, age and "
             "pregnancy plans."],
        do=["I suggest you consult a physician or endocrinologist. Hypothyroidism is usually treated with a daily "
            "thyroid hormone tablet, with the dose decided by your doctor and adjusted with repeat TSH tests every "
            "six to eight weeks at first. Take the tablet on an empty stomach at the same time daily, away from "
            "calcium and iron supplements. Diet alone cannot correct an underactive thyroid.",
            "Please repeat the thyroid test after a few weeks to confirm, along with thyroid antibodies if not done. "
            "If treatment is needed, it is simple, safe and usually long term, and most people feel much better "
            "within a few weeks. A balanced diet and exercise help with weight. Women planning pregnancy should "
            "tell their doctor early, as targets are stricter."],
        warn=["Please see a doctor promptly if you notice a rapidly growing lump in the neck, difficulty swallowing "
              "or breathing, or severe drowsiness and slowness.",
              "Consult your doctor soon if you get palpitations or chest pain after starting treatment, as the dose "
              "may need adjustment."],
        fu=[("I started the thyroid tablet two weeks ago but I still feel tired. Should I increase the dose "
             "myself?",
             "Please do not change the dose on your own. Thyroid hormone takes time to act, and it usually takes "
             "about six weeks before blood levels settle and symptoms improve. Your doctor will repeat the TSH test "
             "around that time and adjust the dose if needed. Make sure you are taking the tablet correctly on an "
             "empty stomach. If tiredness continues despite normal levels, other causes such as anemia or vitamin "
             "deficiencies should be checked."),
            ("Are there foods that I should avoid because of my thyroid problem, like cabbage or soy?",
             "For most people on treatment, normal amounts of cabbage, cauliflower and soy in a balanced diet are "
             "fine. The main points are to take the thyroid tablet on an empty stomach and to keep a gap of about "
             "four hours between it and calcium, iron or soy supplements, as they can reduce absorption. Use iodized "
             "salt in normal amounts, but avoid high-dose iodine or kelp supplements unless your doctor advises "
             "them.")],
    ),
    dict(
        slug="type-2-diabetes", who="any", ages=(35, 68),
        s=dict(dur=LONG,
               sugar=["my fasting sugar was 156 and HbA1c 7.4", "my HbA1c came 6.9",
                      "my fasting sugar is around 140 and after food around 220",
                      "my HbA1c has gone up to 8.2 even on tablets"],
               status=["I was diagnosed recently", "I have been on one tablet for two years",
                       "I have just been told I have diabetes", "I am taking tablets but not regularly"],
               worry=["I feel thirsty and pass urine often", "I have tingling in my feet at night",
                      "I have gained weight", "I feel tired after meals"]),
        q=["{me}. {status_cap}. My latest report shows that {sugar}. {worry_cap}. My father also had diabetes.",
           "{me} and for {dur} I have not been feeling well. {worry_cap}. I had a blood test and {sugar}.",
           "{me}. {status_cap} and {sugar}. I do not exercise much and I eat a lot of rice. {worry_cap}."],
        ask=["Can I control it with diet alone?", "Is my diabetes serious?", "What diet should I follow?",
             "Will I need insulin?"],
        why=["In my opinion, your reports are consistent with type 2 diabetes. In type 2 diabetes the body does not "
             "respond properly to insulin, often linked to extra weight, inactivity and family history. High sugar "
             "over years can affect the eyes, kidneys, nerves, heart and blood vessels, but good control greatly "
             "reduces these risks.",
             "Your results show raised blood sugar consistent with type 2 diabetes. The HbA1c reflects average sugar "
             "over the last two to three months, and for many adults the target is around 7 percent or less, although "
             "your doctor may set an individual target."],
        do=["I suggest regular meals with smaller portions of rice and other refined carbohydrates, more vegetables, "
            "pulses and protein, and no sugary drinks. Aim for at least 150 minutes of brisk walking a week and some "
            "strength exercise. Losing even five to ten percent of your weight helps a lot. Please see your doctor to "
            "decide if medicines are needed; the choice and dose must be individualized.",
            "Please consult your physician for a full review including kidney function, cholesterol, urine protein, "
            "blood pressure, an eye examination and a foot check. Take prescribed medicines regularly and do not stop "
            "them on your own. A dietitian can help you plan meals you enjoy. Some people with early diabetes reach "
            "normal sugars with significant weight loss, with medical guidance."],
        warn=["Please seek urgent care if you have very high sugars with vomiting, drowsiness, confusion or deep, "
              "fast breathing, or if a foot wound is not healing or becomes red and swollen.",
              "Seek immediate help if you feel shaky, sweaty and confused while on treatment, as this could be low "
              "sugar, or if you have chest pain or sudden weakness."],
        fu=[("How often should I check my blood sugar at home, and what numbers should I be aiming for?",
             "It depends on your treatment. If you are on diet alone or on tablets that do not cause low sugar, a few "
             "fasting and after-meal readings each week are usually enough, along with an HbA1c every three months. "
             "If you are on insulin or certain tablets, more frequent checks are needed. Targets are individualized, "
             "but a fasting sugar of about 80 to 130 mg/dL is commonly used for adults. Please confirm your targets "
             "with your doctor."),
            ("Can I stop my diabetes tablets if my sugar becomes normal with diet and exercise over the next few "
             "months?",
             "Please do not stop them on your own. Normal readings while on tablets often mean the treatment is "
             "working. If you lose weight and your sugars stay well controlled, your doctor may be able to reduce or "
             "even stop some medicines, but this should be done step by step with regular monitoring. Keep up the "
             "diet and exercise; they are the foundation of treatment in either case.")],
    ),
    dict(
        slug="hypertension", who="any", ages=(35, 70),
        s=dict(dur=MED[2:] + LONG[:3],
               reading=["150/95", "160/100", "145/92", "170/105", "155/98"],
               sym=["occasional headaches", "no symptoms at all", "some dizziness", "a heavy feeling in my head"],
               ctx=["it was found during a routine check-up", "I checked it at a pharmacy",
                    "my home machine shows high readings", "it was high at my eye clinic visit"]),
        q=["{me}. My blood pressure was {reading} and {ctx}. I have {sym}. My mother has high blood pressure too.",
           "{me}. For {dur} my BP readings have been around {reading}. {ctx_cap}. I have {sym}. I am not on any "
           "treatment.",
           "{me} and I have been told I have hypertension. My readings are about {reading}. I have {sym}. I eat a lot "
           "of salty snacks."],
        ask=["Do I need to start tablets now?", "Can I control it without medicine?", "Is this reading dangerous?",
             "Once I start BP tablets, do I have to take them forever?"],
        why=["In my opinion, if these readings are confirmed on repeated measurements, they indicate high blood "
             "pressure (hypertension). It usually causes no symptoms, but over years it increases the risk of heart "
             "attack, stroke and kidney disease. A single high reading can be due to anxiety, pain or recent "
             "caffeine, so proper measurement is important.",
             "A blood pressure of {reading} is above the normal range. Most people with hypertension have no specific "
             "cause, but family history, salt intake, weight, inactivity, alcohol and smoking contribute. In younger "
             "people especially, a secondary cause such as a kidney or hormonal problem is looked for."],
        do=["I suggest checking your blood pressure at home, seated and rested, twice daily for a week and noting "
            "the readings for your doctor. Reduce salt, processed and fried foods, eat more fruits and vegetables, "
            "exercise regularly and limit alcohol. Your doctor will decide whether medicines are needed based on "
            "your readings and overall heart risk, and will choose the medicine and dose.",
            "Please consult your physician for confirmation and basic tests such as kidney function, sugar, "
            "cholesterol, urine and an ECG. Lifestyle changes can lower blood pressure considerably, and many people "
            "also need medicines. Blood pressure tablets are generally safe and usually continued long term, though "
            "doses may be reduced if lifestyle changes work well."],
        warn=["Please go to the emergency department if your blood pressure is very high, for example above 180/120, "
              "with chest pain, breathlessness, severe headache, confusion, weakness or vision changes.",
              "Seek urgent care for sudden weakness or numbness of one side, difficulty speaking, severe headache or "
              "chest pain."],
        fu=[("My doctor started a BP tablet and now I feel a little dizzy when I stand up. Should I stop taking "
             "it?",
             "Please do not stop the tablet suddenly on your own. Mild dizziness when standing can happen in the "
             "first days of treatment as the body adjusts, or if the dose is slightly high. Stand up slowly, drink "
             "enough water, and check your blood pressure at home when you feel dizzy. Contact your doctor soon with "
             "the readings so the dose or medicine can be adjusted. If you faint or have chest pain, seek urgent "
             "care."),
            ("How much salt is okay per day, and does it really make a difference to my blood pressure?",
             "Yes, salt makes a real difference for many people. Most guidelines advise less than about 5 grams of "
             "salt a day, roughly one teaspoon in total, including the salt already in food. Much of our salt comes "
             "from pickles, chips, sauces, bread and restaurant food, so cutting down on these matters more than the "
             "salt shaker. Cooking at home and using herbs, lemon and spices for flavor helps, and your taste adapts "
             "within a few weeks.")],
    ),
    dict(
        slug="iron-deficiency-anemia", who="f", ages=(18, 50),
        s=dict(dur=MED[2:] + LONG[:3],
               hb=["9.2", "8.5", "10.1", "9.8"],
               sym=["feel tired all the time and get breathless on climbing stairs",
                    "feel weak and dizzy and my hands and feet are always cold",
                    "have hair fall and get tired very quickly", "feel exhausted and my skin looks pale"],
               ctx=["My periods are heavy.", "I am vegetarian.", "I donate blood regularly.",
                    "My periods last seven days."]),
        q=["{me}. For {dur} I {sym}. My blood test shows hemoglobin {hb} and the doctor said my iron is low. {ctx}",
           "{me}. I {sym}, and it has been like this for {dur}. {ctx} My hemoglobin is {hb}.",
           "{me}. My recent report shows hemoglobin {hb} and low ferritin. {ctx} I {sym}."],
        ask=["How can I increase my hemoglobin quickly?", "Which foods should I eat?", "Is this serious?",
             "How long will it take to become normal?"],
        why=["In my opinion, your report and symptoms suggest iron deficiency anemia. It is the most common type of "
             "anemia and occurs when the body does not have enough iron to make hemoglobin. In women the common "
             "causes are heavy periods, pregnancy and low dietary iron; less often, blood loss from the gut or poor "
             "absorption is the reason.",
             "A hemoglobin of {hb} with low iron stores explains your tiredness and breathlessness, because less "
             "oxygen is carried to the tissues. It is important both to correct it and to understand why the iron "
             "became low."],
        do=["I suggest iron supplements as advised by your doctor, usually continued for about three months after "
            "hemoglobin becomes normal to refill the stores. Take them with vitamin C rich food or juice and avoid "
            "tea, coffee and milk within an hour or two. Eat iron-rich foods such as leafy greens, lentils, beans, "
            "eggs and lean meat. Iron tablets can darken stools and upset the stomach.",
            "Please consult your doctor to find the cause. If periods are heavy, a gynecologist can help control the "
            "bleeding. Your doctor will prescribe iron in a suitable form and dose and recheck your blood after "
            "about four weeks; hemoglobin usually starts rising within two to three weeks. Iron infusions are an "
            "option if tablets are not tolerated or do not work."],
        warn=["Please seek urgent care if you notice black or bloody stools, vomiting blood, chest pain, fainting or "
              "severe breathlessness at rest.",
              "If you have very heavy bleeding soaking a pad every hour, fainting, or palpitations at rest, please go "
              "to a hospital promptly."],
        fu=[("The iron tablets are giving me constipation and an upset stomach. What should I do about this?",
             "These are common side effects of iron. Taking the tablet with a small meal, or on alternate days, often "
             "reduces stomach upset and may even improve absorption. Drink plenty of water, eat high-fiber foods and "
             "stay active to help with constipation. Your doctor can also switch you to a different iron preparation. "
             "If you still cannot tolerate tablets, iron can be given as an infusion. Please do not stop treatment "
             "without discussing it with your doctor."),
            ("How long will it take for my hemoglobin to become normal, and when should I repeat the blood test?",
             "With regular iron treatment, hemoglobin usually starts rising within two to three weeks and often "
             "increases by about 1 to 2 g/dL over a month. Most people reach normal levels in two to three months. A "
             "repeat blood count after about four weeks shows whether treatment is working. After that, iron is "
             "usually continued for some more time to rebuild stores, and the cause of the deficiency should be "
             "addressed so that it does not recur.")],
    ),
    dict(
        slug="common-cold", who="any", ages=(18, 60),
        s=dict(dur=SHORT,
               sym=["a runny nose, sneezing and a sore throat", "a blocked nose, body ache and tiredness",
                    "a scratchy throat, cough and a watery nose", "a heavy head, sneezing and a mild cough"],
               fever=["My temperature is 99.5 F.", "I have a mild temperature.", "I have no fever.",
                      "My temperature was 100 F last night."],
               tried=["steam inhalation", "ginger tea with honey", "paracetamol", "salt water gargles"]),
        q=["{me}. For {dur} I have had {sym}. {fever} I have tried {tried}. I have an important meeting next week.",
           "{me} and I caught a cold {dur} ago. Now I have {sym}. {fever} I am feeling quite low on energy.",
           "{me}. I have {sym} for {dur}. {fever} My colleague had the same thing. I have tried {tried}."],
        ask=["Do I need antibiotics?", "How can I recover faster?", "When will this go away?",
             "Which medicine should I take?"],
        why=["In my opinion, these symptoms suggest a common cold, which is a viral infection of the nose and throat. "
             "It usually gets better on its own within seven to ten days, although a cough can linger for two to "
             "three weeks. Antibiotics do not work against viruses and are not needed for a simple cold.",
             "Your symptoms fit a viral upper respiratory infection. Many different viruses cause colds, which is why "
             "we can catch them again and again. The body clears the infection by itself, and treatment is aimed at "
             "easing the symptoms."],
        do=["I suggest rest, plenty of warm fluids, steam inhalation, saline nasal drops and salt water gargles. "
            "Paracetamol at the label dose helps with fever and aches. Honey in warm water soothes a cough in adults. "
            "Wash your hands often and cover coughs to avoid spreading it. Decongestant sprays should not be used "
            "for more than a few days.",
            "Please rest, stay well hydrated and use simple remedies for comfort. Over-the-counter cold remedies can "
            "ease symptoms but do not shorten the illness; read the labels carefully so that you do not take "
            "paracetamol twice through combination products. If you have asthma or heart disease, keep a closer "
            "watch on your symptoms."],
        warn=["Please consult a doctor if you have a high fever for more than three days, breathing difficulty, chest "
              "pain, a severe sore throat with difficulty swallowing, ear pain, or if you get worse after first "
              "improving.",
              "See a doctor if you become breathless, cough up blood, have a high fever that does not settle, or feel "
              "much worse after a week."],
        fu=[("It has been ten days and the cold is better, but I still have a cough, mostly at night. Is this "
             "normal?",
             "Yes, a lingering cough for two to three weeks after a cold is quite common, as the airways stay "
             "sensitive for a while. Warm fluids, honey, steam and avoiding smoke usually help. Please see a doctor "
             "if the cough lasts more than three weeks, or if you have fever, breathlessness, wheezing, chest pain, "
             "blood in the phlegm, or thick discolored phlegm while feeling unwell."),
            ("My nose is completely blocked and I cannot sleep at night. Can I use a nasal decongestant spray?",
             "Yes, a decongestant nasal spray can give quick relief, but it should be used for no more than three to "
             "five days. Longer use can cause rebound congestion, where the nose becomes more blocked when you stop. "
             "Saline sprays or rinses, steam and sleeping with the head slightly raised are safe alternatives. People "
             "with high blood pressure or certain other conditions should check with a pharmacist before using "
             "decongestants.")],
    ),
    dict(
        slug="sinusitis", who="any", ages=(18, 60),
        s=dict(dur=["ten days", "twelve days", "two weeks", "three weeks", "a week"],
               sym=["pain and pressure over my cheeks and forehead",
                    "a blocked nose with thick yellow-green discharge",
                    "a headache that gets worse when I bend forward",
                    "pain around my eyes and a reduced sense of smell"],
               start=["after a cold", "after swimming", "during a change of weather", "without any clear cause"],
               tried=["steam inhalation", "a nasal spray", "antihistamine tablets", "paracetamol"]),
        q=["{me}. For {dur} I have {sym}. It started {start}. I have tried {tried} but I am not much better.",
           "{me} and I get sinus problems often. This time, for {dur}, I have {sym}. I have tried {tried}, which "
           "helps only for a short time.",
           "{me}. It started {start}, and now for {dur} I have {sym} along with a mild fever."],
        ask=["Do I need an antibiotic?", "Should I get an X-ray or CT scan of my sinuses?", "Is this sinusitis?",
             "How can I stop it from coming back?"],
        why=["In my opinion, your symptoms suggest sinusitis, which is inflammation of the air spaces around the "
             "nose. Most cases follow a cold and are viral, and they usually improve within two to three weeks. A "
             "bacterial infection is more likely if symptoms last beyond ten days without improvement, are severe "
             "with high fever, or get worse after first improving.",
             "Facial pressure, a blocked nose and thick discharge after a cold are typical of acute sinusitis. "
             "Allergies, a deviated nasal septum or nasal polyps can make people more prone to repeated episodes."],
        do=["I suggest steam inhalation, saline nasal rinses two or three times a day, enough fluids and simple "
            "painkillers at label doses. A steroid nasal spray prescribed by your doctor can reduce swelling. "
            "Antibiotics help only in selected cases, so please consult a doctor rather than self-medicating. "
            "Imaging is not needed for routine sinusitis.",
            "Please see an ENT specialist if episodes are frequent. Treating any underlying allergy, regular saline "
            "rinses and avoiding smoke help prevent recurrences. A CT scan is considered only for chronic or "
            "recurrent sinusitis, suspected complications, or before surgery."],
        warn=["Please seek urgent care if you develop swelling or redness around the eyes, double vision, a severe "
              "headache, neck stiffness, confusion or high fever.",
              "Swelling around the eye, changes in vision, or a severe headache with fever need immediate medical "
              "attention."],
        fu=[("How do I do the saline nasal rinse properly? I have never done it before and I am a bit nervous.",
             "You can buy a saline rinse kit from a pharmacy and use the sachets supplied with the bottle. Use only "
             "boiled and cooled water, or distilled water, never plain tap water. Lean over a sink, tilt your head to "
             "one side and gently squeeze the saline into the upper nostril so that it drains out of the other. "
             "Breathe through your mouth. Repeat on the other side and gently blow your nose afterwards. Clean the "
             "bottle after each use."),
            ("The doctor gave me antibiotics five days ago but my nose is still blocked. Should I ask for a stronger "
             "antibiotic?",
             "Some blockage can continue for a week or two even when the infection is settling, because the lining "
             "of the sinuses takes time to heal. If your fever and facial pain are improving, continue the course as "
             "prescribed along with saline rinses and steam. If you are not improving at all, or are getting worse, "
             "please see your doctor again rather than changing antibiotics yourself, so they can reassess the "
             "diagnosis.")],
    ),
    dict(
        slug="conjunctivitis", who="any", ages=(22, 55),
        s=dict(dur=["two days", "three days", "four days", "five days"],
               eye=["my right eye", "my left eye", "both eyes", "one eye and now the other"],
               sym=["redness, a gritty feeling and watery discharge",
                    "redness with sticky yellow discharge and eyelids stuck together in the morning",
                    "red, itchy and watery eyes with puffy lids", "redness and burning with mild discharge"],
               ctx=["Several people in my office have red eyes.", "I wear contact lenses.",
                    "My child had red eyes last week.", "I also have a cold."]),
        q=["{me}. For {dur} I have had {sym} in {eye}. {ctx} My vision is normal.",
           "{me}. I woke up {dur} ago with {sym} in {eye}. {ctx} It is not painful, just irritating.",
           "{me}. {ctx} Now I have {sym} in {eye}, for {dur}."],
        ask=["Which eye drops should I use?", "Is this contagious?", "Can I go to work?",
             "Should I see an eye doctor?"],
        why=["In my opinion, this sounds like conjunctivitis, an inflammation of the thin membrane covering the white "
             "of the eye. Watery discharge with a cold is often viral, sticky yellow discharge suggests a bacterial "
             "cause, and itching with puffy lids points towards allergy. Viral and bacterial conjunctivitis are "
             "contagious, while allergic conjunctivitis is not.",
             "Red eyes with discharge and normal vision are most often due to conjunctivitis. Viral conjunctivitis "
             "spreads easily and usually settles on its own in one to two weeks; a bacterial infection may clear "
             "faster with antibiotic drops."],
        do=["I suggest cleaning the eyelids with cool boiled water and clean cotton, using lubricating eye drops and "
            "not rubbing the eyes. Wash your hands often and do not share towels or pillows. Please do not use "
            "steroid eye drops on your own, as they can be harmful in some infections. If the discharge is thick and "
            "yellow, a doctor may prescribe antibiotic drops. Avoid contact lenses until the eye is normal.",
            "Please consult an eye doctor for an examination, especially if you wear contact lenses. Cold compresses "
            "ease discomfort, and anti-allergy eye drops are useful for allergic symptoms. Stay away from work or "
            "school while the discharge is heavy to avoid spreading it, and replace eye makeup used during the "
            "infection."],
        warn=["Please see an eye specialist urgently if you have eye pain, blurred vision, sensitivity to light, a "
              "very red eye after an injury, or pain while wearing contact lenses.",
              "Reduced vision, severe pain or light sensitivity are not typical of simple conjunctivitis and need a "
              "same-day eye examination."],
        fu=[("How long am I contagious with this eye infection? Can I go back to the office tomorrow morning?",
             "Viral conjunctivitis can be contagious for as long as the eyes are red and watery, often up to one to "
             "two weeks, while bacterial conjunctivitis is usually much less contagious about a day after starting "
             "antibiotic drops. Many workplaces allow return once the discharge has settled, if you wash your hands "
             "carefully and do not share items. If your work involves close contact with others or children, check "
             "local guidance and stay off a little longer."),
            ("Can I use the eye drops that my brother used last month for his eye infection? There is some left.",
             "Please do not use someone else's eye drops. Opened bottles can become contaminated after about four "
             "weeks, and the drops may not be suitable for your type of conjunctivitis. Some drops contain steroids, "
             "which can worsen certain infections and raise eye pressure. Lubricating drops are safe to use. If you "
             "need medicated drops, get them prescribed after an examination, and discard them once the course is "
             "finished.")],
    ),
    dict(
        slug="ear-infection-child", who="any", ages=(25, 40), hist=False,
        s=dict(dur=["a day", "two days", "three days"],
               child=["son", "daughter"], kid_age=["two", "three", "four", "five", "six", "seven"],
               sym=["ear pain and a fever", "ear pain that gets worse at night, with a mild fever",
                    "ear pain with crying and irritability", "ear pain, fever and poor sleep"],
               ctx=["It started after a cold with a runny nose.",
                    "There was some yellow discharge from the ear this morning.",
                    "The child is eating less than usual.", "This is the third ear infection this year."]),
        q=["My {child} is {kid_age} years old and has had {sym} for {dur}. {ctx} We have given paracetamol syrup "
           "for the fever.",
           "I am writing about my {child}, who is {kid_age}. For {dur} there has been {sym}. {ctx}",
           "My {kid_age} year old {child} has been complaining of {sym} for {dur}. {ctx} We are very worried."],
        ask=["Does my child need antibiotics?", "Is this an ear infection?", "Can this affect hearing?",
             "When should we see a doctor?"],
        why=["In my opinion, your child most likely has an acute middle ear infection (otitis media). It is very "
             "common in young children, often after a cold, because the tube connecting the ear to the throat is "
             "short and gets blocked easily. Many ear infections are viral and settle within two to three days.",
             "Ear pain with fever after a cold in a young child usually suggests a middle ear infection. Discharge "
             "from the ear may mean that the eardrum has developed a small tear to release pressure, which generally "
             "heals by itself once the infection settles."],
        do=["I suggest paracetamol or ibuprofen syrup according to your child's weight as written on the pack, for "
            "pain and fever, and plenty of fluids. Please have a doctor examine the ear. Antibiotics are given in "
            "some cases, such as very young children, severe symptoms, discharge from the ear, or no improvement "
            "after two to three days; the doctor will decide the medicine and dose by weight.",
            "Please get your child examined by a pediatrician or ENT doctor, who will look at the eardrum. Pain "
            "relief is the first step. Do not put oil or drops in the ear without advice. If infections keep "
            "returning, the doctor may check hearing and consider other measures. Keep the child away from "
            "cigarette smoke, as it increases ear infections."],
        warn=["Please seek urgent care if your child has a high fever that does not come down, is very drowsy or "
              "unusually irritable, has a stiff neck, or has swelling or redness behind the ear.",
              "Go to the hospital at once if there is swelling behind the ear, severe headache, vomiting, drowsiness, "
              "or if the child is not drinking."],
        fu=[("The fever has gone, but my child still says the ear feels blocked and does not hear well. Is this "
             "normal?",
             "Yes, after a middle ear infection, fluid can remain behind the eardrum for a few weeks and cause a "
             "blocked feeling and mildly reduced hearing. This usually clears on its own within four to twelve weeks. "
             "Please have the ear checked again if the blocked feeling lasts more than about three months, if your "
             "child's speech or schoolwork seems affected, or if pain or fever returns."),
            ("How do I give the correct dose of fever syrup to my child? I am confused by the different strengths.",
             "Always use the dose chart on the pack, which is based on your child's age or, better, weight, and use "
             "the measuring syringe or cup that comes with the medicine rather than a kitchen spoon. Different "
             "products have different strengths, so do not switch between them without checking the label. Keep the "
             "recommended gap between doses and do not exceed the maximum number of doses in a day. A pharmacist can "
             "help you work out the exact amount.")],
    ),
    dict(
        slug="kidney-stones", who="any", ages=(25, 60),
        s=dict(dur=SHORT,
               sym=["sudden severe pain in my right side that goes to the groin",
                    "colicky pain in my left flank with nausea", "pain in my back and blood in the urine",
                    "waves of pain in my lower abdomen and burning urination"],
               report=["The ultrasound showed a 5 mm stone in the ureter.",
                       "The scan shows a 4 mm stone in the left kidney.",
                       "My ultrasound report says there is a 7 mm stone in the right kidney.",
                       "I have not done any test yet."],
               ctx=["I drink very little water at work.", "I had a stone two years ago.",
                    "I work outdoors in the heat.", "My father also had stones."]),
        q=["{me}. For {dur} I have been getting {sym}. {report} {ctx}",
           "{me}. {ctx} Now, for {dur}, I have {sym}. {report}",
           "{me}. I went to the emergency room last night with {sym}. They did an ultrasound and said there is a "
           "small stone, gave me an injection for the pain and sent me home. {ctx}"],
        ask=["Will this stone pass on its own?", "Do I need surgery?", "How can I prevent stones in future?",
             "What should I eat and avoid?"],
        why=["In my opinion, your symptoms are typical of a urinary stone. Stones form when minerals in the urine "
             "crystallize, more so when fluid intake is low. When a stone moves into the tube between the kidney and "
             "bladder, it causes severe colicky pain that often spreads to the groin, sometimes with nausea and blood "
             "in the urine.",
             "Small stones, generally under about 5 to 6 mm, often pass on their own within a few weeks, while larger "
             "stones are less likely to pass and may need a procedure. The size, position and whether the kidney is "
             "blocked guide the treatment."],
        do=["I suggest drinking enough water to pass about two and a half liters of clear urine a day, and using "
            "pain relief as advised by your doctor. Doctors sometimes prescribe a medicine that relaxes the ureter "
            "to help the stone pass. Please consult a urologist with your reports; if the stone does not pass, "
            "shock wave therapy or a telescope procedure can be used, usually without open surgery.",
            "Please follow up with a urologist and a repeat scan to see whether the stone has passed. For prevention, "
            "drink plenty of water, reduce salt and processed foods, limit very high-oxalate foods, and keep calcium "
            "intake normal rather than low. If you catch the stone when it passes, get it analyzed, as the type "
            "guides prevention."],
        warn=["Please go to the emergency room if you develop fever or chills with the pain, cannot pass urine, have "
              "uncontrolled pain or vomiting, or have only one kidney, as a blocked, infected kidney is an emergency.",
              "Fever with a stone, being unable to keep fluids down, or pain not controlled by medicines needs urgent "
              "hospital care."],
        fu=[("How will I know if the stone has passed? The pain has completely stopped since yesterday evening.",
             "When the pain stops, it may mean the stone has passed, or simply that it has stopped moving for now. "
             "You can pass urine through a strainer or a clean cloth to catch it. Please get a repeat ultrasound or "
             "X-ray as your doctor advises, to confirm that the stone is gone and the kidney is not blocked, because a "
             "stone can sometimes stay silent while still causing blockage."),
            ("Should I stop drinking milk and eating calcium-rich foods so that I do not get stones again?",
             "No, please do not cut down calcium from food. Normal dietary calcium binds oxalate in the gut and can "
             "actually reduce the risk of the most common type of stone. What helps is plenty of fluids, less salt, "
             "less processed meat, moderate animal protein, and avoiding very large amounts of high-oxalate foods "
             "such as spinach and nuts. Your doctor may suggest urine tests to tailor the advice.")],
    ),
    dict(
        slug="gout", who="any", ages=(35, 70),
        s=dict(dur=["a day", "two days", "three days", "four days"],
               joint=["big toe", "ankle", "knee", "foot"],
               sym=["red, hot, swollen and extremely painful", "so painful that even the bedsheet hurts",
                    "swollen and shiny red", "hot and swollen and I cannot walk properly"],
               ctx=["I had a party with beer and meat the day before.", "My uric acid was 8.5 last year.",
                    "I had a similar attack two years ago.",
                    "I recently started a water tablet for blood pressure."]),
        q=["{me}. For {dur} my {joint} has been {sym}. It started suddenly at night. {ctx}",
           "{me}. I woke up {dur} ago with my {joint} {sym}. {ctx} I cannot put weight on it.",
           "{me}. {ctx} Now my {joint} has become {sym}, and it has been {dur}."],
        ask=["Is this gout?", "What should I avoid eating?", "Will I need tablets for uric acid lifelong?",
             "What is the fastest way to reduce the pain?"],
        why=["In my opinion, the sudden onset of a red, hot, very painful joint, especially the big toe, is typical "
             "of an acute gout attack. Gout happens when uric acid crystals deposit in the joint and cause intense "
             "inflammation. Attacks are often triggered by alcohol, especially beer, large meals rich in red meat or "
             "seafood, dehydration and some medicines such as water tablets.",
             "These features strongly suggest gout, although a joint infection can look similar and must be ruled "
             "out, especially with fever. Uric acid can even be normal during an attack, so the diagnosis is "
             "clinical and sometimes confirmed by testing the joint fluid."],
        do=["I suggest resting and raising the joint, applying an ice pack wrapped in a cloth for short periods, and "
            "drinking plenty of water. Please consult a doctor early, as anti-inflammatory treatment works best when "
            "started early in the attack; the choice depends on your kidneys, stomach and other conditions. Avoid "
            "alcohol, sugary drinks and organ meats during the attack.",
            "Please see a physician to confirm the diagnosis and check uric acid, kidney function, sugar and "
            "cholesterol. If you have repeated attacks, joint damage or kidney stones, your doctor may start a "
            "long-term uric acid lowering medicine once the attack settles. Losing weight, less alcohol and red "
            "meat, and enough water help prevent attacks."],
        warn=["Please seek urgent care if you have fever, feel unwell, or the redness is spreading, as a joint "
              "infection must be excluded.",
              "If you have high fever, chills or several joints swelling at once, please get seen the same day."],
        fu=[("Once the pain settles, should I stop eating all protein? I really love fish and chicken.",
             "You do not need to stop protein. It is sensible to limit organ meats, shellfish and large portions of "
             "red meat, and to reduce beer and sugary drinks, which raise uric acid. Moderate portions of chicken or "
             "fish, along with plenty of vegetables, low-fat dairy and water, are fine for most people. Diet alone "
             "lowers uric acid only modestly, so if attacks are frequent, medicines will still be needed."),
            ("My doctor started a uric acid lowering tablet and I got another attack. Is the medicine not working?",
             "This can happen. When uric acid starts falling, crystals in the joints can shift and trigger attacks "
             "during the first few months of treatment. This is why doctors often give a low-dose anti-inflammatory "
             "medicine alongside it for some months. Please do not stop the uric acid medicine during an attack "
             "unless your doctor advises it. Contact your doctor about treating the flare and whether preventive "
             "cover is needed.")],
    ),
    dict(
        slug="plantar-fasciitis", who="any", ages=(30, 62),
        s=dict(dur=MED[1:] + LONG[:2],
               foot=["my right heel", "my left heel", "both my heels"],
               when=["with the first steps in the morning", "after standing for long hours",
                     "in the evening after a busy day", "when I get up after sitting for a while"],
               ctx=["I recently started jogging.", "I have gained some weight.",
                    "I walk barefoot at home on hard floors.", "My job needs me to stand all day."],
               tried=["a pain gel", "hot water soaks", "changing my shoes", "calcium tablets"]),
        q=["{me}. For {dur} I have had pain in {foot}, mostly {when}. {ctx} I have tried {tried}.",
           "{me}. For {dur} I have been having a sharp, stabbing pain in {foot} {when}. {ctx} Walking has become "
           "difficult.",
           "{me}. {ctx} For {dur} I get pain in {foot} {when}. An X-ray showed a small heel spur."],
        ask=["What is the treatment for this?", "Do I need an injection?", "Is the heel spur causing the pain?",
             "Which shoes should I wear?"],
        why=["In my opinion, this is plantar fasciitis, an irritation of the thick band of tissue under the foot "
             "that attaches to the heel. The classic symptom is pain with the first steps in the morning or after "
             "rest. It is common with prolonged standing, new running activity, weight gain, flat feet and tight "
             "calf muscles. A heel spur on X-ray is common and usually not the cause of the pain.",
             "Heel pain of this type is very typical of plantar fasciitis. It settles by itself in most people, but "
             "recovery can take several months, and regular stretching and better footwear make a big difference."],
        do=["I suggest calf and plantar fascia stretches several times a day, especially before getting out of bed, "
            "rolling the foot over a cold water bottle, and supportive cushioned shoes with a slight heel; avoid "
            "walking barefoot on hard floors. A silicone heel cup can help. Reduce running or prolonged standing for "
            "a while. Simple painkillers or gels at label doses can be used short term.",
            "Please continue stretches and supportive footwear for at least six to eight weeks. If not improving, see "
            "an orthopedic doctor or physiotherapist; options include night splints, custom insoles, shock wave "
            "therapy and, in selected cases, an injection. Surgery is rarely needed."],
        warn=["Please see a doctor promptly if there is swelling, redness, numbness, pain at night or after an "
              "injury, or if you have diabetes and notice any foot wound.",
              "Consult a doctor soon if the heel is swollen and warm, if the pain started after a fall, or if you "
              "have numbness or burning in the feet."],
        fu=[("Can you explain the stretches I should do for the heel pain? I am not sure how to do them correctly.",
             "Sure. For the calf stretch, stand facing a wall with the painful foot behind, heel on the floor and knee "
             "straight, and lean forward until you feel the stretch in the calf; hold for thirty seconds and repeat "
             "three times. For the fascia stretch, sit, cross the foot over the other knee and pull the toes back "
             "towards the shin for thirty seconds. Rolling the foot over a frozen water bottle also helps. Do these "
             "two to three times a day."),
            ("How long will it take for the heel pain to go away completely? It is affecting my work.",
             "Plantar fasciitis usually improves slowly. With regular stretching, good footwear and less load on the "
             "foot, most people notice improvement within six to eight weeks, and the majority recover within six to "
             "twelve months. It is important to be consistent and not to return to heavy running too quickly. If "
             "there is no improvement after two to three months of proper care, please see a specialist for other "
             "options.")],
    ),
    dict(
        slug="irritable-bowel-syndrome", who="any", ages=(20, 50),
        s=dict(dur=LONG,
               sym=["bloating and cramping pain that gets better after passing stool",
                    "alternating loose motions and constipation",
                    "urgency to pass stool after meals and a lot of gas",
                    "abdominal discomfort with mucus in the stool"],
               trigger=["stress", "heavy or spicy meals", "milk products", "travel"],
               test=["My stool and blood tests were normal.", "I had an ultrasound which was normal.",
                     "I have not done any tests.", "My doctor said it could be IBS."]),
        q=["{me}. For {dur} I have {sym}. It is worse with {trigger}. {test} There is no weight loss.",
           "{me} and I have had stomach problems for {dur}. I get {sym}, especially with {trigger}. {test}",
           "{me}. {test} But I continue to have {sym}. This has been going on for {dur} and is affecting my work."],
        ask=["Is this IBS and is there a permanent cure?", "What should I eat?", "Do I need a colonoscopy?",
             "Can stress really cause this?"],
        why=["In my opinion, these symptoms suggest irritable bowel syndrome (IBS), a common functional disorder of "
             "the gut. The bowel is more sensitive and its movements are altered, causing pain, bloating and changes "
             "in bowel habit. It is influenced by stress, diet and the gut-brain connection. Although troublesome, "
             "IBS does not damage the bowel or lead to cancer.",
             "Recurrent abdominal pain linked to bowel movements, with bloating and a changing stool pattern, fits "
             "IBS, especially when basic tests are normal and there are no warning signs. Stress does not cause IBS "
             "on its own, but it can clearly make symptoms worse, because the gut and brain are closely connected."],
        do=["I suggest regular meals, eating slowly, limiting fried, spicy and gas-forming foods, and checking "
            "whether milk or certain foods worsen symptoms. A low-FODMAP diet guided by a dietitian helps many "
            "people. Soluble fiber such as psyllium can help both constipation and loose stools. Regular exercise "
            "and stress management are important. Your doctor may prescribe medicines for your main symptom.",
            "Please consult a gastroenterologist to confirm the diagnosis with basic tests such as a blood count, "
            "celiac screening and stool tests if not already done. A food and symptom diary helps identify triggers. "
            "Treatments are aimed at symptoms and can control IBS well, though it may come and go over the years."],
        warn=["Please consult a doctor promptly if you notice blood in the stool, weight loss, diarrhea that wakes "
              "you at night, fever, anemia, or a family history of bowel cancer; these need further tests.",
              "Warning signs such as rectal bleeding, unexplained weight loss, persistent vomiting or a change in "
              "bowel habit after fifty need proper investigation, including a colonoscopy."],
        fu=[("What exactly is the low FODMAP diet? Can I start it on my own without seeing a dietitian?",
             "FODMAPs are certain carbohydrates found in foods such as onion, garlic, wheat, beans, some fruits and "
             "milk, which can ferment in the gut and cause gas and bloating. The diet involves cutting down these "
             "foods for two to six weeks, then reintroducing them one by one to find your personal triggers. It is "
             "best done with a dietitian's guidance, because it is restrictive and not meant to be followed strictly "
             "for a long time."),
            ("Are probiotics helpful for IBS? There are so many different brands in the pharmacy and I am confused.",
             "Some people with IBS find probiotics helpful, especially for bloating, but the evidence varies between "
             "products and results are not guaranteed. If you want to try one, choose a single product, take it as "
             "directed on the label for about four weeks, and continue only if you notice a clear benefit. They are "
             "generally safe for healthy adults and work best alongside diet changes and stress management.")],
    ),
    dict(
        slug="constipation", who="any", ages=(20, 70),
        s=dict(dur=MED[1:] + LONG[:3],
               freq=["only twice a week", "once in three or four days", "every day but with a lot of straining",
                     "irregularly, with hard pellet-like stools"],
               ctx=["I drink very little water.", "I sit at a desk all day.", "I started iron tablets recently.",
                    "I eat very few fruits and vegetables."],
               tried=["a laxative powder", "warm water in the morning", "eating papaya", "psyllium husk"]),
        q=["{me}. For {dur} I pass stool {freq}. {ctx} I have tried {tried} but it works only sometimes. I feel "
           "bloated most of the time.",
           "{me}. I have had constipation for {dur}. I go {freq}. {ctx} I have tried {tried}.",
           "{me}. {ctx} For {dur} now my bowels move {freq}. There is no blood in the stool."],
        ask=["Is it safe to take laxatives daily?", "What should I do to pass stool normally?",
             "Should I be worried about something serious?", "Which foods help with constipation?"],
        why=["In my opinion, this is functional constipation, which is very common and usually related to low fiber "
             "and fluid intake, lack of physical activity, ignoring the urge to pass stool, or certain medicines such "
             "as iron tablets and some painkillers. Sometimes thyroid problems or diabetes contribute, which can be "
             "checked with simple blood tests.",
             "Infrequent, hard stools with straining and bloating are typical of simple constipation. Routine, diet "
             "and fluid intake play a big role, and in most people it improves with gradual changes."],
        do=["I suggest increasing fiber gradually with fruits, vegetables, whole grains and pulses, drinking enough "
            "water, and walking daily. Try to sit on the toilet at the same time each day, ideally after breakfast, "
            "and do not ignore the urge. Fiber supplements such as psyllium help many people. Gentle osmotic "
            "laxatives are generally safe when used as directed; stimulant laxatives are better kept for occasional "
            "use.",
            "Please review any medicines you take with your doctor, as some cause constipation. A small footstool "
            "to raise your knees on the toilet can make passing stool easier. If simple measures do not work within "
            "a few weeks, consult a doctor to check thyroid function and other causes."],
        warn=["Please see a doctor promptly if you notice blood in the stool, black stools, weight loss, severe "
              "abdominal pain, vomiting, or a new change in bowel habit after the age of fifty.",
              "If you cannot pass gas or stool at all and have a swollen, painful abdomen with vomiting, please go to "
              "the emergency department."],
        fu=[("I have been taking a stimulant laxative almost daily for months. Will this damage my bowel in the "
             "long run?",
             "Long-term stimulant laxatives are not as dangerous as once believed, but relying on them daily is not "
             "ideal and can cause cramps and salt imbalance. It is better to build a routine with fiber, fluids and "
             "activity, and to use a gentler osmotic laxative regularly if needed. Please discuss a plan with your "
             "doctor to reduce the stimulant gradually rather than stopping abruptly, and to check for underlying "
             "causes."),
            ("How much water and fiber should I take every day to keep my bowels regular without medicines?",
             "Most adults need around 25 to 30 grams of fiber a day, which you can get from several servings of "
             "fruits and vegetables, whole grains, pulses and seeds. Increase fiber slowly over two to three weeks to "
             "avoid gas. Drink enough fluids so that your urine is pale yellow, often around two liters a day unless "
             "your doctor has advised a fluid limit. Regular exercise also helps the bowel move.")],
    ),
    dict(
        slug="hemorrhoids", who="any", ages=(25, 62),
        s=dict(dur=MED,
               sym=["bright red blood on the toilet paper after passing stool",
                    "a soft swelling near the anus that comes out when I strain",
                    "itching and discomfort around the anus",
                    "painless bleeding and a feeling of incomplete emptying"],
               ctx=["I have been constipated for some time.", "I sit for long hours at work.",
                    "I recently had a bout of diarrhea.", "I lift heavy weights at the gym."],
               tried=["sitz baths", "an ointment from the pharmacy", "adding more fiber to my diet", "ice packs"]),
        q=["{me}. For {dur} I have noticed {sym}. {ctx} I have tried {tried}. I am very embarrassed to show this to "
           "a doctor.",
           "{me}. I have had {sym} for {dur}. {ctx} Could this be piles?",
           "{me}. {ctx} Now, for {dur}, there is {sym}. I have tried {tried}."],
        ask=["Will this need surgery?", "How can I treat this at home?", "Should I be worried about cancer?",
             "What is the best ointment?"],
        why=["In my opinion, these symptoms suggest hemorrhoids (piles), which are swollen blood vessels in the anal "
             "canal. They are very common and are linked to straining, constipation, prolonged sitting and "
             "pregnancy. Internal hemorrhoids typically cause painless bright red bleeding and may come out on "
             "straining, while external ones cause swelling and discomfort.",
             "Bright red bleeding with stools and a swelling that appears on straining are typical of piles. "
             "However, bleeding from the back passage can also be due to a fissure, polyps or, less commonly, bowel "
             "cancer, so an examination is important, especially after forty or if the bleeding continues."],
        do=["I suggest keeping stools soft with a high-fiber diet, plenty of water and a fiber supplement if needed. "
            "Avoid straining and sitting on the toilet for long, including using your phone there. Warm sitz baths "
            "for ten to fifteen minutes two or three times a day ease discomfort. Over-the-counter hemorrhoid creams "
            "can relieve itching for a few days. Most cases improve with these measures.",
            "Please consult a general surgeon or proctologist for a quick examination; this is routine for them and "
            "nothing to be embarrassed about. If symptoms continue despite diet changes, simple clinic procedures "
            "like banding are very effective, and surgery is needed only for large or persistent piles."],
        warn=["Please seek urgent care for heavy bleeding, dizziness, a very painful hard lump near the anus, black "
              "stools, or bleeding with weight loss or a change in bowel habit.",
              "If bleeding is heavy or persistent, the stools are dark, or you feel weak and faint, please get seen "
              "urgently."],
        fu=[("How long can I use the hemorrhoid cream? According to the box it has a steroid in it.",
             "Creams containing a steroid should generally be used only for a short time, usually no more than about "
             "one week, as longer use can thin the delicate skin in that area. Follow the instructions on the pack or "
             "your doctor's advice. If symptoms have not settled within a week, or keep coming back, please see a "
             "doctor for an examination rather than continuing the cream. Soothing barrier creams and sitz baths can "
             "be used for longer."),
            ("The doctor suggested rubber band ligation. Is it painful, and will the piles come back after it?",
             "Banding is a common clinic procedure for internal piles. A small rubber band is placed at the base of "
             "the hemorrhoid, which then shrinks and falls off within about a week. Most people feel a dull ache or "
             "pressure for a day or two, managed with simple painkillers, and some mild bleeding can occur. Piles can "
             "come back over time, especially if constipation and straining continue, so diet and toilet habits "
             "remain important.")],
    ),
    dict(
        slug="pcos", who="f", ages=(17, 35),
        s=dict(dur=LONG,
               cycle=["my periods come every two or three months", "my periods are very irregular",
                      "I sometimes miss periods for four months", "my cycle is 45 to 60 days long"],
               sym=["weight gain around the tummy", "acne and facial hair", "hair thinning on the scalp",
                    "darkening of the skin on my neck"],
               report=["My ultrasound shows multiple small follicles in both ovaries.", "My doctor suspects PCOS.",
                       "My hormone tests showed slightly high testosterone.", "I have not done any tests yet."]),
        q=["{me}. For {dur} {cycle}. I also have {sym}. {report}",
           "{me}. {report} I have {sym} and {cycle}. I am worried whether I can have children in the future.",
           "{me} and I have been struggling with {sym} for {dur}. Also, {cycle}. {report}"],
        ask=["Is this PCOS and can it be cured?", "Will this affect my fertility?",
             "What lifestyle changes should I make?", "Do I need to take hormonal tablets?"],
        why=["In my opinion, your symptoms suggest polycystic ovary syndrome (PCOS), a common hormonal condition in "
             "young women. It involves irregular ovulation, higher levels of male-type hormones causing acne or "
             "excess hair, and often insulin resistance, which makes weight gain easier. The so-called cysts seen on "
             "ultrasound are actually small follicles and are not dangerous.",
             "Irregular cycles together with acne, excess hair or weight gain are typical of PCOS. The diagnosis is "
             "made from the history, blood tests and sometimes an ultrasound, after ruling out thyroid and other "
             "hormonal causes. PCOS cannot be cured permanently, but it can be controlled very well."],
        do=["I suggest regular exercise and a balanced diet low in refined sugar; even five to ten percent weight "
            "loss brings back regular periods in many women. Please consult a gynecologist or endocrinologist. "
            "Depending on your goals, treatment may include hormonal pills to regulate periods and reduce acne and "
            "hair, medicines to improve insulin resistance, and treatment for unwanted hair.",
            "Please get blood tests such as thyroid, prolactin, sugar and lipids as your doctor advises. Many women "
            "with PCOS conceive naturally, and if needed, ovulation induction treatment is effective. It is "
            "important to have at least a few periods a year to protect the womb lining, so do not ignore long "
            "gaps between periods."],
        warn=["Please see a doctor soon if you have very heavy bleeding, severe abdominal pain, or no period for "
              "more than three months, and take a pregnancy test if there is any chance of pregnancy.",
              "Consult your doctor promptly if you have sudden severe pelvic pain, fainting, or bleeding that soaks "
              "through a pad every hour."],
        fu=[("I want to get pregnant in the next year. What should I do now to improve my chances with PCOS?",
             "Start folic acid as advised by your doctor, aim for a healthy weight with regular exercise and "
             "balanced meals, and avoid smoking and alcohol. Track your cycles to see whether you are ovulating. "
             "Please see a gynecologist before trying, so they can check your thyroid, sugar and other tests. If you "
             "do not conceive within six to twelve months, or your cycles are very irregular, ovulation induction "
             "treatment can be planned."),
            ("Is it safe to take birth control pills for many years to control my PCOS symptoms?",
             "For most young women without risk factors, combined hormonal pills are safe to use for several years "
             "to regulate periods and reduce acne and hair growth, with periodic reviews. They are not suitable for "
             "everyone, for example in women with migraine with aura, high blood pressure, a history of blood clots, "
             "or smokers over thirty-five. Your doctor will check these before prescribing and will review you "
             "regularly.")],
    ),
    dict(
        slug="pregnancy-nausea", who="f", ages=(21, 38),
        s=dict(dur=["a week", "ten days", "two weeks", "three weeks"],
               weeks=["seven", "eight", "nine", "ten", "eleven", "twelve"],
               sym=["nausea all day and vomiting two or three times daily", "morning sickness that lasts until evening",
                    "nausea with every meal and a strong dislike of food smells",
                    "vomiting after most meals and a feeling of weakness"],
               ctx=["This is my first pregnancy.",
                    "This is my second pregnancy and I did not have this the first time.",
                    "I have lost about two kilograms.", "I can keep down only small sips of water."],
               tried=["ginger tea", "dry crackers in the morning", "eating small meals", "lemon water"]),
        q=["{me} and I am {weeks} weeks pregnant. I have {sym}. {ctx} I have tried {tried}.",
           "{me}. I am {weeks} weeks pregnant and suffering from {sym}. {ctx}",
           "{me}. {ctx} I am now {weeks} weeks pregnant, and for {dur} now I have had {sym}."],
        ask=["Is this harmful for my baby?", "Which medicine is safe for vomiting in pregnancy?",
             "When will this stop?", "What can I eat to feel better?"],
        why=["Congratulations on your pregnancy. In my opinion, what you describe is nausea and vomiting of "
             "pregnancy, which affects most pregnant women and is related to pregnancy hormones. It usually peaks "
             "around nine weeks and eases between twelve and twenty weeks in most women. Mild to moderate symptoms "
             "do not harm the baby.",
             "Nausea and vomiting are very common in the first trimester and are generally a sign of the normal "
             "hormonal changes of pregnancy. A small number of women develop a severe form called hyperemesis "
             "gravidarum, with persistent vomiting, weight loss and dehydration, which needs medical treatment."],
        do=["I suggest small, frequent, bland meals such as crackers, toast and rice, eating something before getting "
            "out of bed, avoiding strong smells and fatty food, and sipping fluids between meals. Ginger may help. "
            "Continue your prenatal vitamins; if they worsen nausea, take them at night. If symptoms are troublesome, "
            "your obstetrician can prescribe anti-sickness medicines that are safe in pregnancy.",
            "Please inform your obstetrician, especially as the symptoms are affecting your eating. They may check "
            "your urine for ketones and your weight, and can prescribe pregnancy-safe anti-nausea treatment if "
            "needed. Rest as much as you can and ask for help with cooking if smells trigger nausea."],
        warn=["Please go to the hospital if you cannot keep down any fluids for 24 hours, pass very little dark "
              "urine, feel dizzy or faint, vomit blood, or have abdominal pain, fever or bleeding.",
              "Seek urgent care if you are vomiting everything, losing weight quickly, or feel very weak and dizzy, "
              "as you may need fluids through a drip."],
        fu=[("Is it safe to take the anti-vomiting medicine that is sold over the counter while I am pregnant?",
             "Please do not take any over-the-counter anti-vomiting medicine in pregnancy without first checking with "
             "your obstetrician or pharmacist. Some medicines are well studied and considered safe in pregnancy, while "
             "others are not recommended. Your doctor will choose a suitable medicine and dose based on how severe "
             "your symptoms are. Meanwhile, small frequent meals, fluids and ginger are safe first steps."),
            ("I am worried that my baby is not getting enough nutrition because I am eating so little. Should I be "
             "concerned?",
             "This is a very common worry. In early pregnancy the baby's nutritional needs are small and are met from "
             "your body's stores, so mild nausea with reduced eating for a few weeks does not usually harm the baby. "
             "Focus on staying hydrated and eating whatever you can tolerate. Continue prenatal vitamins with folic "
             "acid if you can keep them down. If you are losing weight or cannot keep fluids down, see your doctor.")],
    ),
    dict(
        slug="menstrual-cramps", who="f", ages=(15, 32),
        s=dict(dur=LONG[2:],
               pain=["severe cramps in my lower abdomen during the first two days of my periods",
                     "period pain that goes to my back and thighs",
                     "cramping pain with nausea and loose motions during my periods",
                     "period pain so bad that I have to miss classes or work on the first day"],
               ctx=["My periods are regular.", "The bleeding is normal in amount.",
                    "The pain has become worse over the last year.", "My mother also had painful periods."],
               tried=["a hot water bag", "painkillers from the chemist", "ginger tea", "rest"]),
        q=["{me}. I get {pain}. {ctx} I have tried {tried} but it helps only a little.",
           "{me}. For {dur} I have been having {pain}. {ctx} I dread my periods every month.",
           "{me} and every month I suffer from {pain}. {ctx} I have tried {tried}."],
        ask=["Is this normal?", "What can I take for the pain?", "Do I need an ultrasound?",
             "Will this affect my fertility?"],
        why=["In my opinion, this sounds like primary dysmenorrhea, which means painful periods without an underlying "
             "disease. It is caused by natural chemicals called prostaglandins that make the womb contract, and it is "
             "very common in young women. It often improves with age.",
             "Cramping pain in the first one or two days of the period, sometimes with back pain, nausea or loose "
             "stools, is typical of period pain caused by prostaglandins. However, if the pain becomes worse over "
             "time, it is worth checking for conditions such as endometriosis or fibroids."],
        do=["I suggest an over-the-counter anti-inflammatory painkiller at the label dose, started as soon as the "
            "pain or bleeding begins rather than when the pain is already severe, provided you have no stomach "
            "ulcers or asthma that worsens with such tablets. A hot water bag, light exercise and enough sleep help. "
            "If this is not enough, a gynecologist may suggest hormonal treatment.",
            "Please consult a gynecologist, who may advise a pelvic ultrasound, especially if the pain is getting "
            "worse over time. Regular exercise, heat and anti-inflammatory pain relief are the first steps. Painful "
            "periods alone do not mean reduced fertility, but conditions like endometriosis should be looked for if "
            "the pain is severe."],
        warn=["Please see a doctor urgently if you have sudden severe pain outside your periods, fever, fainting, "
              "very heavy bleeding, or pain with a missed period, as pregnancy-related problems must be excluded.",
              "Seek medical care if the pain is not relieved by painkillers, occurs between periods, or comes with "
              "pain during intercourse or bowel movements."],
        fu=[("Can I take the painkiller every month during my periods? Is it harmful to my body in the long term?",
             "For most healthy young women, using an anti-inflammatory painkiller for two or three days each month at "
             "the label dose, with food, is considered safe. It should be avoided if you have stomach ulcers, kidney "
             "disease or asthma that worsens with these tablets, or if you are pregnant, unless your doctor advises "
             "otherwise. If you need painkillers for more days, or they do not help, please see a gynecologist for "
             "other options."),
            ("What is endometriosis, and how would I know if I have it? My friend was recently diagnosed with it.",
             "In endometriosis, patches of tissue that behave like the womb lining grow outside the womb and cause "
             "inflammation and pain. Common signs are periods that become more painful over time, pain "
             "during intercourse, pain with bowel movements during periods, and sometimes difficulty conceiving. "
             "Diagnosis is based on symptoms, examination and scans, and sometimes laparoscopy. If you have these "
             "symptoms, please see a gynecologist, as effective treatments exist.")],
    ),
    dict(
        slug="vitamin-d-deficiency", who="any", ages=(22, 65),
        s=dict(dur=MED[2:] + LONG[:3],
               level=["12", "9", "15", "18"],
               sym=["body aches and tiredness", "pain in my legs and back", "low energy and muscle cramps",
                    "generalized weakness"],
               ctx=["I work indoors all day.", "I rarely go out in the sun.",
                    "I am vegetarian and do not take milk.", "I always cover myself fully when I go out."]),
        q=["{me}. For {dur} I have had {sym}. My vitamin D level came as {level} ng/mL. {ctx}",
           "{me}. My doctor checked my blood and vitamin D is {level}. {ctx} I have had {sym} for {dur}.",
           "{me} and I am suffering from {sym} for {dur}. {ctx} A test showed vitamin D of {level} ng/mL."],
        ask=["How should I take vitamin D?", "How long will it take to get better?",
             "Can sunlight alone correct this?", "Is this the cause of my pains?"],
        why=["In my opinion, a vitamin D level of {level} ng/mL is low and can contribute to body aches, muscle "
             "weakness and tiredness. Vitamin D is mainly made in the skin with sunlight, and deficiency is very "
             "common in people who stay indoors, cover their skin, have darker skin or have a limited diet. It is "
             "important for bone and muscle health.",
             "Your report shows vitamin D deficiency, which is common and easily treatable. Low vitamin D can cause "
             "bone and muscle pains, but tiredness has many causes, so tests such as hemoglobin and thyroid function "
             "may also be worth checking."],
        do=["I suggest vitamin D supplements as prescribed by your doctor; treatment often starts with a higher "
            "replacement course for some weeks, followed by a lower maintenance dose. The schedule depends on your "
            "level and health, so please follow your doctor's advice and do not take very high doses on your own. "
            "Get some regular sunlight and enough calcium in your diet.",
            "Please consult your physician for a treatment course. Symptoms usually improve within a few weeks to a "
            "couple of months, and your doctor may recheck the level after about three months. Vitamin D is best "
            "absorbed with a meal that contains some fat. Regular weight-bearing exercise also supports bone health."],
        warn=["Please see a doctor if you have severe bone pain, difficulty walking or marked muscle weakness. Very "
              "high doses taken without supervision can raise calcium levels, with nausea, thirst and confusion.",
              "Consult your doctor promptly if you have bone pain after a minor injury, severe weakness, or excessive "
              "thirst, vomiting and confusion while taking supplements."],
        fu=[("How much sunlight do I need each day to make enough vitamin D? I work in an office all day.",
             "It depends on your skin color, location, season and how much skin is exposed. As a rough guide, many "
             "people make useful amounts with about fifteen to thirty minutes of midday sun on the arms and face a "
             "few times a week, and darker skin needs longer. Avoid sunburn. In winter, or for people who are indoors "
             "most of the day, sunlight alone is often not enough, which is why supplements are commonly advised."),
            ("Should I also take calcium tablets along with the vitamin D, or is vitamin D alone enough for me?",
             "Not everyone needs calcium tablets. If your diet includes enough calcium from milk, curd, cheese, green "
             "leafy vegetables, ragi or fortified foods, vitamin D alone may be enough. Your doctor may suggest "
             "calcium supplements if your intake is low or if you have osteoporosis. Too much calcium from tablets "
             "can increase the risk of kidney stones in some people, so please follow your doctor's advice.")],
    ),
    dict(
        slug="fatty-liver", who="any", ages=(28, 62),
        s=dict(report=["My ultrasound shows grade 1 fatty liver.", "The ultrasound report says grade 2 fatty liver.",
                       "My liver enzymes are slightly raised and the scan shows fatty liver.",
                       "Fatty liver was found on a routine scan."],
               ctx=["I am overweight.", "I drink alcohol on weekends.", "I do not drink alcohol at all.",
                    "I have high cholesterol."],
               sym=["I have mild discomfort on the right side after heavy meals",
                    "I sometimes feel heaviness in the right upper abdomen",
                    "I feel tired easily", "I have occasional bloating"]),
        q=["{me}. {report} {ctx} {sym_cap}. How serious is this?",
           "{me}. {sym_cap}, so I had some tests done. {report} {ctx}",
           "{me}. I had a health check-up last month. {report} {ctx} My doctor told me not to worry but I am anxious."],
        ask=["Can fatty liver be reversed?", "What diet should I follow?", "Do I need any medicine?",
             "Can this lead to cirrhosis?"],
        why=["In my opinion, this is most likely non-alcoholic fatty liver disease, where extra fat builds up in the "
             "liver cells. It is very common and closely linked to excess weight, insulin resistance, diabetes and "
             "high cholesterol. Alcohol can cause similar changes. In most people it is mild, but in some it can "
             "progress to inflammation and scarring over many years.",
             "Fatty liver on ultrasound is a common finding and is usually reversible in its early stages. The grade "
             "on ultrasound gives a rough idea, but your doctor may use blood tests or a special scan to check for "
             "scarring, which is what matters most for the long term."],
        do=["I suggest gradual weight loss of about seven to ten percent of your body weight through a balanced diet "
            "and regular exercise; this can significantly reduce liver fat. Cut down sugar, sugary drinks, refined "
            "carbohydrates and fried food, and eat more vegetables, whole grains and lean protein. It is best to "
            "avoid alcohol. Please do not take unproven liver supplements or herbal products.",
            "Please consult a physician or gastroenterologist to check your sugar, cholesterol, liver function and "
            "hepatitis markers, and to assess for scarring if needed. There is no single tablet that cures fatty "
            "liver; lifestyle change remains the main treatment, along with treating diabetes or cholesterol if "
            "present. A repeat assessment after six to twelve months is useful."],
        warn=["Please see a doctor promptly if you notice yellowing of the eyes, swelling of the abdomen or legs, "
              "vomiting blood, black stools or confusion.",
              "Yellow eyes, easy bruising, abdominal swelling or black stools are warning signs that need urgent "
              "evaluation."],
        fu=[("How much weight do I need to lose, and how fast should I lose it, to improve my fatty liver?",
             "Losing about five percent of body weight reduces liver fat, and around seven to ten percent can improve "
             "inflammation and sometimes early scarring. A steady loss of about half to one kilogram per week is "
             "ideal. Crash diets and very rapid weight loss are not recommended. Combine a balanced, calorie-"
             "controlled diet with at least 150 minutes of exercise per week, including some strength training."),
            ("Is it okay to drink a little alcohol occasionally at parties now that I have fatty liver?",
             "It is best to avoid alcohol completely, or at least keep it to a minimum, when you have fatty liver. "
             "Alcohol adds extra stress to the liver and can speed up inflammation and scarring, especially with "
             "raised liver enzymes or other risk factors. If you do drink, discuss a safe limit with your doctor. "
             "Stopping alcohol also helps with weight loss and blood sugar.")],
    ),
    dict(
        slug="gallstones", who="any", ages=(30, 65),
        s=dict(dur=MED,
               sym=["pain in the upper right abdomen after fatty meals",
                    "pain under the ribs on the right side that goes to the back",
                    "bloating and pain in the upper abdomen after dinner",
                    "episodes of severe upper abdominal pain lasting a few hours"],
               report=["The ultrasound shows multiple small gallstones.", "My scan shows a single 12 mm gallstone.",
                       "An ultrasound showed gallstones and a slightly thick gallbladder wall.",
                       "My doctor suspects gallstones."],
               ctx=["I have had three such episodes.", "The pain settles on its own after a few hours.",
                    "I also feel nauseous during the pain.", "The pain sometimes wakes me at night."]),
        q=["{me}. For {dur} I have been getting {sym}. {ctx} {report}",
           "{me}. {report} I get {sym}. {ctx}",
           "{me}. I had an attack of severe upper abdominal pain last week and went to the emergency room. {report} "
           "Now I am fine, but I "
           "am worried it will happen again."],
        ask=["Do I need surgery?", "Can gallstones be dissolved with medicine?", "What should I avoid eating?",
             "Is it dangerous to wait?"],
        why=["In my opinion, these symptoms are typical of biliary colic from gallstones. When a stone temporarily "
             "blocks the outflow of the gallbladder, usually after a fatty meal, it causes pain in the upper right or "
             "central abdomen that can spread to the back or right shoulder and lasts from minutes to hours.",
             "Gallstones are common, and many people have them without any symptoms; such silent stones usually do "
             "not need treatment. Once they cause typical pain episodes like yours, however, further attacks and "
             "complications become more likely."],
        do=["I suggest consulting a general surgeon. For gallstones that cause pain, the usual treatment is "
            "laparoscopic removal of the gallbladder, a common keyhole operation after which people live normally. "
            "Medicines to dissolve stones work only in selected cases and slowly, and stones often return. "
            "Meanwhile, eat smaller, low-fat meals.",
            "Please discuss the options with your surgeon. Because the stones are causing symptoms, surgery is "
            "generally recommended, and it is usually planned rather than done as an emergency. Until then, eat "
            "smaller, lower-fat meals and keep a healthy weight, but avoid crash diets, since rapid weight loss can "
            "promote stone formation."],
        warn=["Please go to the emergency department if the pain lasts more than six hours, or comes with fever, "
              "chills, yellowing of the eyes or skin, dark urine or persistent vomiting, as these can mean infection "
              "of the gallbladder, a blocked bile duct or pancreatitis.",
              "Severe continuous pain, fever, jaundice, or pain spreading to the back with vomiting needs urgent "
              "hospital care."],
        fu=[("Can I live normally without a gallbladder? How will I digest fat after the operation?",
             "Yes, most people live completely normal lives without a gallbladder. The liver continues to make bile, "
             "which flows directly into the intestine instead of being stored. Some people notice loose stools or "
             "discomfort after fatty meals for a few weeks or months, which usually settles. Eating smaller, "
             "lower-fat meals at first and then gradually returning to a normal balanced diet is generally advised."),
            ("How long is the recovery after laparoscopic gallbladder surgery? I need to plan my leave from work.",
             "Recovery after laparoscopic removal is usually quick. Many people go home the same day or the next day. "
             "Light activities and desk work are often possible within one to two weeks, while heavy lifting and "
             "strenuous exercise are usually avoided for about four to six weeks. Your surgeon will give specific "
             "advice. Contact them if you develop fever, yellow eyes, increasing pain or redness around the wounds.")],
    ),
    dict(
        slug="tonsillitis", who="any", ages=(16, 40),
        s=dict(dur=SHORT[:4],
               sym=["a very sore throat and pain while swallowing", "swollen tonsils with white spots",
                    "throat pain with swollen glands in my neck",
                    "a painful throat and ear pain when I swallow"],
               fever=["My temperature is 101 F.", "I have a mild fever.", "I had fever last night.",
                      "There is no cough."],
               ctx=["This is the fourth time this year.", "I get this every few months.",
                    "I rarely get throat infections.", "My voice has become a little muffled."]),
        q=["{me}. For {dur} I have had {sym}. {fever} {ctx}",
           "{me} and I have been suffering from {sym} for {dur}. {fever} {ctx} I can only take liquids.",
           "{me}. I have had {sym} for {dur}, along with tiredness. {fever} {ctx}"],
        ask=["Do I need antibiotics?", "Should I get my tonsils removed?", "What can I do for the pain?",
             "Is this a bacterial infection?"],
        why=["In my opinion, you have tonsillitis, an inflammation of the tonsils. Most cases are caused by viruses "
             "and get better within a week. Some are caused by streptococcus bacteria, which is more likely with "
             "fever, swollen tender neck glands, pus on the tonsils and no cough.",
             "A sore throat with swollen tonsils and fever suggests acute tonsillitis. Whether it is viral or "
             "bacterial cannot always be told by looking, so a doctor may use a scoring system or a throat swab to "
             "decide whether antibiotics are needed."],
        do=["I suggest warm salt water gargles, plenty of fluids, soft foods, rest, and paracetamol or ibuprofen at "
            "label doses for pain and fever. Please consult a doctor for an examination; if a bacterial infection is "
            "likely, they will prescribe a suitable antibiotic course, which should be completed. Avoid sharing "
            "utensils while you are unwell.",
            "Please see an ENT specialist if you get frequent episodes. Removal of the tonsils is usually considered "
            "when there are many well-documented episodes, for example around seven in one year or five a year for "
            "two years, or complications like an abscess. Fluids and rest help each episode settle."],
        warn=["Please seek urgent care if you have difficulty breathing, drooling or inability to swallow saliva, "
              "difficulty opening the mouth, severe one-sided throat pain with a muffled voice, or a stiff neck, as "
              "these may mean an abscess.",
              "Go to the emergency department if swallowing becomes impossible, breathing is noisy or difficult, or "
              "one side of the throat becomes very swollen."],
        fu=[("The throat is better after three days of the antibiotic. Do I have to finish all ten days of the "
             "course?",
             "Yes, please complete the full course as prescribed by your doctor, even if you feel better. For "
             "streptococcal throat infections, completing the course helps clear the bacteria and reduces the risk "
             "of rare complications such as rheumatic fever. If you develop a rash, swelling of the face or "
             "difficulty breathing, stop the medicine and seek urgent care, as this could be an allergic reaction."),
            ("Is it true that removing the tonsils reduces immunity? I am quite nervous about having the surgery.",
             "Removing the tonsils does not significantly weaken the immune system, because many other lymphoid "
             "tissues continue to fight infection. The surgery is common and generally safe, but recovery in adults "
             "can be painful for one to two weeks, and there is a small risk of bleeding afterwards. It is recommended "
             "only when episodes are frequent or severe. Discuss the benefits and risks with your ENT surgeon.")],
    ),
    dict(
        slug="fungal-skin-infection", who="any", ages=(18, 55),
        s=dict(dur=MED[1:] + LONG[:2],
               site=["in my groin", "on my inner thighs", "on my waist under the belt", "between my toes",
                     "on my chest and back"],
               sym=["itchy, red, round patches with a raised border", "an itchy rash that is spreading in rings",
                    "itching and peeling skin", "a red itchy rash that gets worse with sweating"],
               tried=["a mixed cream from the chemist", "an antifungal powder", "coconut oil",
                      "a steroid cream that a friend gave me"],
               ctx=["My roommate has similar patches.", "I sweat a lot.", "I go to the gym daily.",
                    "It improves and then comes back."]),
        q=["{me}. For {dur} I have had {sym} {site}. I have tried {tried}. {ctx}",
           "{me}. I have {sym} {site} for {dur}. {ctx} It is very embarrassing.",
           "{me}. I work in a hot and humid place. For {dur} I have been troubled by {sym} {site}. {ctx}"],
        ask=["Is this ringworm?", "Which cream should I use and for how long?", "Why does it keep coming back?",
             "Is it contagious?"],
        why=["In my opinion, this looks like a fungal skin infection (tinea, also called ringworm), which is common in "
             "warm, humid conditions and sweaty areas. It is caused by a fungus, not a worm, and spreads through skin "
             "contact and shared towels, clothes or gym equipment. Steroid-containing creams can make it spread and "
             "become stubborn.",
             "An itchy rash with a raised, scaly edge and clearing in the center is typical of tinea. Recurrence is "
             "common when treatment is stopped too early, when the area stays damp, or when family members or "
             "roommates are also affected."],
        do=["I suggest keeping the area clean and dry, wearing loose cotton clothes, changing innerwear and socks "
            "daily, and not sharing towels. A plain antifungal cream applied twice daily to the rash and a little "
            "beyond, continued for about two weeks after the rash clears, usually works for small areas. Please stop "
            "any cream containing a steroid. Widespread infection may need antifungal tablets.",
            "Please consult a dermatologist, especially if the rash keeps returning. Wash clothes in hot water and "
            "dry them in the sun, and treat everyone affected at home at the same time. Antifungal powder can help "
            "prevent recurrence. Antifungal tablets, if needed, are prescribed for a set duration after checking "
            "your health."],
        warn=["Please see a doctor promptly if the rash becomes painful, swollen or oozes pus, spreads rapidly, or if "
              "you have diabetes or a weak immune system.",
              "If you develop fever, spreading redness or broken skin between the toes, please get seen soon, as a "
              "bacterial infection may have set in."],
        fu=[("The itching is gone after one week of using the cream. Can I stop applying it now?",
             "It is good that the itching has settled, but please continue the antifungal cream for at least one to "
             "two more weeks after the skin looks completely normal, or as your doctor advised. The fungus can remain "
             "in the skin even after symptoms disappear, and stopping early is one of the main reasons for "
             "recurrence. Keep the area dry and continue the hygiene measures."),
            ("My partner has also started getting a similar rash now. Can this infection spread within the "
             "family?",
             "Yes, tinea spreads easily through close contact and shared towels, bedding and clothes. It is important "
             "that all affected family members are treated at the same time, otherwise it can keep passing back and "
             "forth. Use separate towels, wash bedsheets and clothes regularly in hot water and dry them in sunlight, "
             "and avoid sharing combs or footwear. Please have your partner examined before starting any cream.")],
    ),
    dict(
        slug="dandruff", who="any", ages=(16, 45),
        s=dict(dur=LONG,
               sym=["white flakes on my scalp and shoulders", "an itchy scalp with yellowish greasy flakes",
                    "scaling and redness along my hairline", "dandruff that makes my scalp itch all day"],
               tried=["an anti-dandruff shampoo", "oiling my hair daily", "lemon juice", "curd on my scalp"],
               ctx=["It is worse in winter.", "I also have flaking on my eyebrows and beside my nose.",
                    "I am worried it is causing hair fall.", "It gets worse when I am stressed."]),
        q=["{me}. I have had {sym} for {dur}. I have tried {tried} but it keeps coming back. {ctx}",
           "{me}. For {dur} I have been having {sym}. {ctx} My friends have started noticing it.",
           "{me}. The main problem is {sym}, which has been there for {dur}. {ctx} I have tried {tried}."],
        ask=["How can I get rid of dandruff permanently?", "Which shampoo is best?",
             "Is oiling good or bad for dandruff?", "Is this a fungal infection?"],
        why=["In my opinion, this is dandruff, which is a mild form of seborrheic dermatitis. It is linked to a yeast "
             "that normally lives on the scalp and to the oiliness of the skin. It tends to come and go and is often "
             "worse in winter and with stress. It can also affect the eyebrows, the sides of the nose and the skin "
             "behind the ears.",
             "Flaking with itching like this is usually seborrheic dermatitis or simple dandruff. It is a common, "
             "harmless condition that can be controlled well, although it often returns, so ongoing maintenance is "
             "usually needed."],
        do=["I suggest a medicated anti-dandruff shampoo containing ketoconazole, selenium sulfide, zinc pyrithione "
            "or coal tar. Apply it to the scalp, leave it for five minutes and rinse, two to three times a week, "
            "then once a week to keep it away. Heavy oiling can feed the yeast and make dandruff worse, so avoid "
            "leaving oil on the scalp for long. Lemon and similar remedies may irritate the skin.",
            "Please consult a dermatologist if shampoos do not help within a month, as conditions such as scalp "
            "psoriasis can look similar. A mild medicated lotion may be prescribed for short periods for red, itchy "
            "areas. Dandruff itself does not usually cause significant hair loss, although scratching can damage the "
            "hair."],
        warn=["Please see a doctor if there are thick silvery plaques, bleeding or painful areas, patches of hair "
              "loss, or if the rash spreads to other parts of the body.",
              "If the scalp becomes painful, oozes or develops patches of hair loss, please get it examined."],
        fu=[("How often should I wash my hair with the medicated shampoo? Will it damage my hair if I use it "
             "regularly?",
             "Initially use it two to three times a week for about four weeks, then once a week or once every two "
             "weeks to prevent relapse. On other days you can use a mild regular shampoo. Leave the medicated shampoo "
             "on the scalp for a few minutes before rinsing. Some of these shampoos make hair feel dry, so use a "
             "conditioner on the lengths of the hair, avoiding the scalp. They do not damage hair when used as "
             "directed."),
            ("Can my diet or stress cause dandruff? I notice that it is much worse during exams and busy weeks.",
             "Stress does not cause dandruff directly, but it can trigger flares of seborrheic dermatitis in people "
             "who are prone to it, which matches what you notice. Diet has a limited role, though a balanced diet is "
             "good for skin health. Regular sleep, stress management and continuing the maintenance shampoo during "
             "stressful periods usually help keep it under control.")],
    ),
    dict(
        slug="panic-attacks", who="any", ages=(18, 45),
        s=dict(dur=MED[2:] + LONG[:3],
               where=["while driving", "in crowded places", "at night in bed", "at work during meetings"],
               sym=["my heart starts pounding, I feel short of breath and I think I am going to die",
                    "I get sudden chest tightness, sweating, shaking and a fear of losing control",
                    "I get tingling in my hands, dizziness and a feeling that I cannot breathe",
                    "I get a racing heartbeat, a choking feeling and a strong urge to escape"],
               test=["I went to the emergency room twice and my ECG was normal.",
                     "My heart tests and blood tests were normal.", "My doctor said it might be panic attacks.",
                     "I have not seen a doctor yet."],
               n=["several times a week", "two or three times a month", "almost every day"]),
        q=["{me}. For {dur} I get sudden episodes {where} where {sym}. It lasts about ten to twenty minutes. {test}",
           "{me}. I am getting attacks {n}, mostly {where}. During an attack {sym}. {test} Now I am scared to go out.",
           "{me}. {test} But I still get episodes where {sym}. This has been happening {n} for {dur}."],
        ask=["What is happening to me?", "Can this be cured?", "How can I stop an attack when it starts?",
             "Am I going crazy?"],
        why=["I understand how frightening these episodes are. In my opinion, they sound like panic attacks, although "
             "heart and other physical causes should be ruled out first if this has not been done. A panic attack is "
             "a sudden surge of intense fear with strong physical symptoms from the body's alarm response. It is not "
             "dangerous and not a sign of going mad, though it feels terrifying.",
             "Sudden episodes of pounding heart, breathlessness, sweating and fear that peak within minutes are "
             "typical of panic attacks. When they recur and you start fearing the next attack or avoiding places, it "
             "is called panic disorder, which is very treatable."],
        do=["I suggest slow breathing during an attack, in through the nose for four seconds and out slowly for six "
            "seconds, reminding yourself that it will pass. Reduce caffeine and alcohol, exercise regularly and keep "
            "regular sleep. Cognitive behavioral therapy is very effective for panic disorder. If needed, a doctor "
            "may prescribe a medicine that prevents attacks, taken under supervision.",
            "Please see a mental health professional for a proper assessment and treatment. Avoiding situations tends "
            "to strengthen the fear, so with a therapist's help, gradually returning to these places is an important "
            "part of recovery. Avoid using sedative tablets or alcohol to cope, as they can lead to dependence."],
        warn=["Please seek emergency care if you have chest pain that is different from your usual attacks, pain "
              "spreading to the arm or jaw, fainting, or thoughts of harming yourself.",
              "If an episode feels different from usual, with persistent chest pain, severe breathlessness or "
              "fainting, please go to the emergency room to be safe."],
        fu=[("How do I know whether it is a panic attack or a heart attack? I am always afraid that it is my heart.",
             "Panic attacks usually come on suddenly, peak within about ten minutes and settle within half an hour, "
             "often with tingling, fear and fast breathing. Heart pain is more often a pressure or heaviness that "
             "comes with exertion, spreads to the arm, jaw or back, and may come with sweating and breathlessness, "
             "especially in older people or those with risk factors. If your tests are normal, panic is more likely, "
             "but if you are ever unsure, it is always right to seek emergency care."),
            ("Is there any medicine that I can take only when an attack comes, instead of every day?",
             "Some fast-acting calming medicines can stop attacks, but they can cause dependence and are usually "
             "prescribed only for short periods, if at all. The main treatment is therapy and, if needed, a daily "
             "preventive medicine that reduces attacks over time and is not habit forming. Please discuss this with "
             "a psychiatrist, who will decide what suits you and the correct dose. Breathing techniques remain the "
             "best tool during an attack.")],
    ),
    dict(
        slug="costochondritis", who="any", ages=(20, 55),
        s=dict(dur=SHORT[2:] + MED[:3],
               side=["on the left side of my chest", "in the center of my chest",
                     "on the right side of my chest near the breastbone"],
               sym=["sharp and gets worse when I press the spot", "worse when I take a deep breath or twist my body",
                    "worse when I lie on that side", "an ache that increases when I lift my arm"],
               ctx=["It started after I had a bad cough.", "I started going to the gym recently.",
                    "I moved house and lifted heavy furniture.", "It started after I slept in an awkward position."],
               test=["My ECG was normal.", "I have not done any tests.", "My ECG and chest X-ray were normal.",
                     "My doctor examined me and said my heart sounds fine."]),
        q=["{me}. For {dur} I have had pain {side}. It is {sym}. {ctx} {test} I am worried it is my heart.",
           "{me}. {ctx} Since then I have had pain {side}, and it has been {dur} now. The pain is {sym}. {test}",
           "{me}. {test} However, the pain {side} has been bothering me for {dur}. It is {sym}. {ctx}"],
        ask=["Is this heart pain?", "What is causing this pain?", "How long will this take to heal?",
             "Should I do more tests?"],
        why=["In my opinion, pain that is sharp, localized and worse on pressing the chest wall, on movement or on "
             "deep breathing is most likely from the chest wall, such as costochondritis, an inflammation of the "
             "cartilage joining the ribs to the breastbone. It often follows coughing, unusual exercise or strain, "
             "and it is harmless, though it can be quite painful.",
             "Chest wall pain like yours, brought on by pressing the spot and by movement, is typical of "
             "costochondritis or muscle strain rather than heart pain. Heart pain usually feels like pressure or "
             "heaviness, comes with exertion and is not tender to touch. Still, chest pain should always be assessed "
             "properly, particularly if you have risk factors."],
        do=["I suggest rest from activities that worsen the pain, warm compresses, gentle stretching and simple pain "
            "relief such as paracetamol or an anti-inflammatory gel at label doses. Avoid heavy lifting and intense "
            "upper body workouts for a few weeks. It usually settles within a few weeks, although it can sometimes "
            "linger longer.",
            "Please consult a doctor for an examination; an ECG is a reasonable test for reassurance if there is any "
            "doubt. Once it is confirmed as chest wall pain, time, heat and avoiding strain are the main treatment. "
            "Better posture and a gradual return to exercise help prevent recurrence."],
        warn=["Please go to the emergency department immediately if you have chest pressure or tightness with "
              "sweating, breathlessness, nausea, pain spreading to the arm, jaw or back, fainting, or coughing up "
              "blood.",
              "Seek urgent care for chest pain that comes on with exertion, feels crushing or heavy, or comes with "
              "shortness of breath or a racing heart."],
        fu=[("Can I continue going to the gym with this chest pain, or should I stop exercising completely for now?",
             "It is better to take a break from chest and upper body exercises, heavy lifting and anything that "
             "brings on the pain for two to three weeks. Walking, light cycling and lower body exercise are usually "
             "fine if they do not increase the pain. When the pain settles, return gradually with lighter weights and "
             "good technique. If pain comes on with exertion and feels like pressure, stop and get checked."),
            ("It has been a month and the chest pain still comes and goes. Is it normal for it to last this long?",
             "Yes, costochondritis can last several weeks and sometimes a few months, with good and bad days. "
             "Continue heat, gentle stretching and avoiding strain. Please see your doctor again for a "
             "re-examination, as persisting pain may need further evaluation such as an X-ray or blood tests, "
             "especially if there is swelling, fever, weight loss or pain at night.")],
    ),
    dict(
        slug="palpitations", who="any", ages=(20, 55),
        s=dict(dur=MED[1:] + LONG[:3],
               sym=["my heart suddenly beats very fast", "I feel skipped beats and a thump in my chest",
                    "I feel my heart pounding", "my heart races for a few minutes and then settles"],
               trigger=["after drinking coffee", "when I lie down on my left side", "during stress at work",
                        "for no obvious reason"],
               test=["My ECG was normal.", "I have not done any tests.", "A Holter test was suggested.",
                     "My thyroid test is still pending."]),
        q=["{me}. For {dur} I get episodes where {sym}, usually {trigger}. {test} There is no chest pain.",
           "{me}. Sometimes {sym}. This happens mostly {trigger} and has been going on for {dur}. {test}",
           "{me}. {test} But for {dur} I notice that {sym} {trigger}. I drink three to four cups of tea daily."],
        ask=["Is this a heart problem?", "Should I see a cardiologist?", "What tests do I need?", "Is it dangerous?"],
        why=["In my opinion, the sensations you describe are palpitations, an awareness of your own heartbeat. In "
             "healthy adults they are commonly due to extra beats (ectopic beats), anxiety, caffeine, nicotine, "
             "dehydration, lack of sleep, anemia or an overactive thyroid. Extra beats are usually harmless. Less "
             "commonly, episodes of fast heartbeat are due to a rhythm disorder that can be treated.",
             "Skipped beats and short episodes of pounding are very common and are usually benign, especially when "
             "the ECG is normal. The important thing is to capture the rhythm during an episode and to check for "
             "simple causes in the blood."],
        do=["I suggest cutting down tea, coffee, energy drinks and alcohol, avoiding smoking, sleeping well and "
            "staying hydrated. Please consult a doctor for an ECG, blood tests for hemoglobin, thyroid and "
            "electrolytes, and a 24-hour Holter or event monitor to record the rhythm during symptoms. During an "
            "episode, note your pulse or record a smartwatch ECG to show the doctor.",
            "Please see a cardiologist if episodes are frequent, prolonged or come with other symptoms. An "
            "echocardiogram may be done to check the heart structure. If a specific rhythm problem is found, "
            "effective treatments are available. Meanwhile, note when episodes happen and what you were doing."],
        warn=["Please go to the emergency department if palpitations come with chest pain, fainting or near-fainting, "
              "severe breathlessness, or if a fast heartbeat continues for more than a few minutes without settling.",
              "Seek urgent care if you faint, have chest pain, or if there is a family history of sudden death at a "
              "young age."],
        fu=[("The Holter report says occasional ventricular ectopics. What does that mean, and do I need any "
             "treatment?",
             "Ventricular ectopics are extra beats that start in the lower chambers of the heart. Occasional "
             "ectopics are very common in healthy people and usually need no treatment, especially when the heart "
             "structure is normal. Reducing caffeine, stress and alcohol often helps. If they are very frequent, "
             "cause troublesome symptoms or the heart structure is abnormal, your cardiologist may suggest further "
             "tests or medicines. Please discuss the full report with them."),
            ("Can anxiety alone cause such strong palpitations? I do get stressed very easily these days.",
             "Yes, anxiety releases adrenaline, which can make the heart beat faster and more forcefully and can also "
             "make you more aware of normal or extra beats. However, it is important to rule out physical causes "
             "first with basic tests. Once these are normal, managing stress with exercise, breathing techniques, "
             "good sleep and, if needed, counselling usually reduces the palpitations.")],
    ),
    dict(
        slug="varicose-veins", who="any", ages=(30, 65),
        s=dict(dur=LONG,
               leg=["my right leg", "my left leg", "both my legs"],
               sym=["swollen blue veins", "bulging twisted veins behind the knee",
                    "visible veins with aching and heaviness",
                    "prominent veins with itching around the ankle"],
               job=["I stand for long hours at work.", "I am a nurse and on my feet all day.",
                    "My mother had the same problem.", "The problem got worse after I gained weight."],
               sym2=["The legs feel heavy by evening.", "There is mild ankle swelling at night.",
                     "I get cramps at night.", "There is no pain."]),
        q=["{me}. For {dur} I have had {sym} in {leg}. {job} {sym2}",
           "{me}. {job} I have noticed {sym} in {leg} for {dur}. {sym2}",
           "{me}. I have {sym} in {leg}, and it has been {dur}. {sym2} I am worried about getting a clot."],
        ask=["Do I need surgery?", "Will stockings help?", "Is this dangerous?",
             "What treatment is available without surgery?"],
        why=["In my opinion, these are varicose veins, which occur when the valves in the leg veins become weak, "
             "allowing blood to pool and the veins to enlarge. They are common and linked to prolonged standing, "
             "family history, pregnancy, age and excess weight. Most varicose veins are not dangerous, though they "
             "can cause aching, heaviness, swelling and skin changes.",
             "Bulging veins with heaviness and evening swelling are typical of varicose veins due to venous "
             "insufficiency. A Doppler ultrasound of the leg veins shows which valves are leaking and helps plan "
             "treatment."],
        do=["I suggest raising your legs above heart level when resting, avoiding standing still for long periods, "
            "walking regularly to use the calf muscle pump, and keeping a healthy weight. Properly fitted graduated "
            "compression stockings reduce aching and swelling; put them on in the morning. Please consult a vascular "
            "surgeon, who may advise a venous Doppler scan.",
            "Please see a vascular specialist for an assessment. Modern treatments include minimally invasive "
            "procedures such as laser or radiofrequency ablation and sclerotherapy, often done as day procedures. "
            "Treatment is recommended for significant symptoms, skin changes or ulcers; for mild cases, stockings "
            "and lifestyle measures are enough."],
        warn=["Please seek urgent care if one leg suddenly becomes painful, swollen and warm, as this may be a deep "
              "vein clot, or if you develop sudden breathlessness or chest pain. If a vein bleeds, lie down, raise "
              "the leg, press firmly and get medical help.",
              "A hard, red, tender vein, a non-healing sore near the ankle, or sudden swelling of the whole leg needs "
              "prompt medical attention."],
        fu=[("How do I choose the right compression stockings? There are so many types in the medical shop.",
             "Stockings come in different lengths and pressure grades. For most people with symptomatic varicose "
             "veins, below-knee stockings of a moderate grade are suitable, but the right grade should be advised by "
             "your doctor, especially if you have diabetes, poor circulation or heart problems. Measure your ankle "
             "and calf in the morning, when swelling is least, to choose the correct size. Wear them during the day "
             "and remove them at night."),
            ("Will the varicose veins come back after the laser treatment, or is it a permanent solution?",
             "Laser or radiofrequency treatment closes the faulty main vein effectively in most people, and the "
             "results are usually good. However, new varicose veins can develop over the years because the tendency "
             "remains, especially with prolonged standing, weight gain or pregnancy. Regular walking, leg elevation, "
             "weight control and, if advised, compression stockings help reduce recurrence. Follow-up with your "
             "vascular surgeon is recommended.")],
    ),
    dict(
        slug="hair-loss", who="any", ages=(20, 45),
        s=dict(dur=LONG[:5],
               pattern=["a lot of hair falling while combing and washing", "thinning at the crown",
                        "a receding hairline at the temples", "a widening parting"],
               ctx=["I had typhoid three months ago.", "I have been under a lot of stress.",
                    "I recently lost weight by dieting.", "My father became bald early."],
               tried=["onion juice", "many hair oils", "a biotin supplement", "changing my shampoo"]),
        q=["{me}. For {dur} I have noticed {pattern}. {ctx} I have tried {tried} but nothing has helped.",
           "{me}. I am worried about {pattern}, which has been going on for {dur}. {ctx}",
           "{me} and I am losing confidence because of {pattern}. This has been happening for {dur}. {ctx} I have "
           "tried {tried}."],
        ask=["Will my hair grow back?", "Which tests should I do?", "What treatment works for hair loss?",
             "Is this due to a vitamin deficiency?"],
        why=["In my opinion, two common types of hair loss should be considered. Diffuse shedding a few months after "
             "an illness, fever, stress, childbirth or crash dieting is called telogen effluvium; it is temporary and "
             "the hair usually grows back within six to twelve months. Gradual thinning at the crown, temples or "
             "parting with a family history suggests hereditary pattern hair loss.",
             "Hair fall has many causes, including stress, recent illness, thyroid problems, iron deficiency, rapid "
             "weight loss and hereditary pattern hair loss. Identifying the type is important because the treatment "
             "differs."],
        do=["I suggest a balanced diet with enough protein, and blood tests for hemoglobin, ferritin, thyroid and "
            "vitamin D as advised by your doctor. Avoid tight hairstyles and harsh treatments. Onion juice and most "
            "hair oils have little proven benefit. For pattern hair loss, a dermatologist may suggest topical "
            "minoxidil or other medicines, which slow thinning but work only as long as they are used.",
            "Please see a dermatologist for an examination of the scalp. If this is temporary shedding, correcting "
            "the trigger is enough and the hair regrows. Biotin supplements help only if you are deficient, which is "
            "rare. Be patient, as any treatment takes at least three to six months to show results."],
        warn=["Please see a doctor soon if you notice round bald patches, scalp redness, scaling or pain, or hair "
              "loss with other symptoms such as weight change, tiredness or, in women, irregular periods.",
              "Consult a doctor promptly if hair is coming out in patches, the scalp is scarred or inflamed, or you "
              "have other new symptoms like fatigue or palpitations."],
        fu=[("Is minoxidil safe to use? I heard that more hair falls after starting it and that I must use it "
             "forever.",
             "Minoxidil applied to the scalp is generally safe and is one of the most studied treatments for pattern "
             "hair loss. Some people notice increased shedding in the first few weeks, which usually settles and "
             "means new growth is starting. Results take three to six months, and it works only while you use it. "
             "Scalp irritation can occur. Please use it as directed by your dermatologist, and avoid it in "
             "pregnancy."),
            ("My blood tests show low ferritin. Can this be the cause of my hair fall, and will iron fix it?",
             "Low iron stores can contribute to hair shedding, particularly in women, and correcting them may help "
             "hair regrowth along with other measures. Your doctor will prescribe iron in a suitable form and "
             "duration and should also look for the reason for the low iron, such as heavy periods or diet. "
             "Improvement in the hair takes a few months after the iron stores recover, so patience is needed.")],
    ),
    dict(
        slug="neck-pain", who="any", ages=(25, 62),
        s=dict(dur=MED,
               sym=["stiffness and pain in my neck", "neck pain that goes to my shoulder blade",
                    "neck pain with a cracking sound when I turn my head",
                    "pain in the back of my neck with headache"],
               cause=["long hours on the laptop", "sleeping on a high pillow", "using my phone for hours",
                      "driving long distances"],
               tried=["a pain relief spray", "a hot water bag", "a neck collar", "massage"]),
        q=["{me}. For {dur} I have had {sym}. I think it is due to {cause}. I have tried {tried}. There is no "
           "numbness in my hands.",
           "{me}. I have been suffering from {sym} for {dur}, worse in the evening. I have tried {tried}.",
           "{me}. My X-ray shows mild cervical spondylosis and straightening of the neck curve. I have had {sym} for "
           "{dur}, especially after {cause}."],
        ask=["Is this cervical spondylosis?", "What exercises should I do?", "Should I use a cervical collar?",
             "Do I need an MRI?"],
        why=["In my opinion, your symptoms suggest mechanical neck pain, most often due to muscle strain from "
             "posture, such as looking down at screens for long periods, and sometimes related to age-related "
             "changes in the neck called cervical spondylosis. These changes are very common on X-ray even in people "
             "without pain, so X-ray findings should be read together with the symptoms.",
             "Neck pain with stiffness and pain towards the shoulder blade, without arm numbness or weakness, is "
             "usually muscular and postural. Most such episodes improve within a few weeks with simple measures."],
        do=["I suggest correcting your posture by keeping the screen at eye level, taking a short break every thirty "
            "to forty minutes, and using a single low pillow that supports the neck. Gentle neck stretches, shoulder "
            "exercises, heat and simple pain relief at label doses help. Soft collars are not recommended for long, "
            "as they weaken the neck muscles.",
            "Please keep the neck moving gently rather than immobilizing it. If the pain continues beyond six weeks, "
            "consult an orthopedic doctor or physiotherapist. An MRI is needed only if there are nerve symptoms such "
            "as arm weakness or numbness, or other warning signs."],
        warn=["Please seek urgent care if you have weakness or numbness in the arms or legs, difficulty walking, loss "
              "of bladder control, fever with neck stiffness, or neck pain after an injury.",
              "If you develop arm weakness, clumsy hands, unsteady walking, or a severe headache with neck stiffness "
              "and fever, please get seen urgently."],
        fu=[("Now I get tingling in the fingers of my right hand as well. Could this be coming from the neck?",
             "Tingling in the fingers along with neck pain can be due to irritation of a nerve root in the neck, "
             "often from a disc bulge or bony changes, although other causes such as carpal tunnel syndrome are "
             "possible. Please see your doctor for an examination of the strength, reflexes and sensation in your "
             "arm. An MRI may be advised if symptoms persist or if there is weakness. Seek urgent care if you notice "
             "weakness or trouble walking."),
            ("Can you suggest some simple neck exercises that I can do at my desk during the working day?",
             "Yes. Chin tucks: sit upright and gently draw your chin straight back, hold for five seconds, and repeat "
             "ten times. Side bends: tilt your ear towards your shoulder and hold for twenty seconds on each side. "
             "Shoulder rolls and shoulder blade squeezes also help. Do these slowly, within a comfortable range, two "
             "or three times a day. Stop if they cause sharp pain or tingling, and consider a physiotherapy review.")],
    ),
    dict(
        slug="vertigo", who="any", ages=(35, 70),
        s=dict(dur=["three days", "a week", "ten days", "two weeks"],
               trig=["when I turn over in bed", "when I look up", "when I get up from bed in the morning",
                     "when I bend down"],
               sym=["the room starts spinning for a few seconds", "I feel a spinning sensation with nausea",
                    "everything whirls around for less than a minute"],
               ctx=["There is no hearing loss.", "I had a similar episode last year.",
                    "I have no headache or weakness.", "I had a viral fever two weeks before this started."]),
        q=["{me}. For {dur} {sym} {trig}. {ctx} I am afraid to move my head.",
           "{me}. I get dizzy spells where {sym}, mostly {trig}. This started {dur} ago. {ctx}",
           "{me}. {ctx} For {dur} now, {sym} {trig}, and then it settles."],
        ask=["What is the cause of this vertigo?", "Is this related to my brain?", "Which medicine will help?",
             "Are there exercises for this?"],
        why=["In my opinion, brief spinning episodes triggered by changes in head position are typical of benign "
             "paroxysmal positional vertigo (BPPV). It happens when tiny calcium crystals in the inner ear move into "
             "the wrong canal and send false movement signals to the brain. It is common, especially after middle "
             "age, and is not related to the brain.",
             "Short episodes of spinning lasting seconds with head movements, without hearing loss or neurological "
             "symptoms, strongly suggest BPPV, an inner ear problem. Another cause of vertigo is inflammation of the "
             "balance nerve after a viral infection, which usually causes continuous vertigo for days."],
        do=["I suggest seeing an ENT doctor or physiotherapist, who can confirm BPPV with a simple positional test "
            "and treat it with a repositioning maneuver, such as the Epley maneuver, which often gives quick relief. "
            "Anti-vertigo medicines are not very helpful for BPPV and are best used only briefly. Get up slowly and "
            "take care to avoid falls.",
            "Please consult your doctor for an examination. If BPPV is confirmed, repositioning maneuvers are the "
            "main treatment and can be taught for home use. Balance exercises help the brain adapt. BPPV can recur, "
            "but it is treatable each time."],
        warn=["Please go to the emergency department immediately if vertigo comes with double vision, slurred speech, "
              "weakness or numbness, difficulty walking, a severe headache or sudden hearing loss, as these may mean "
              "a stroke.",
              "Continuous vertigo with inability to walk, a new severe headache, facial drooping or difficulty "
              "speaking needs emergency evaluation."],
        fu=[("Can I do the Epley maneuver myself at home? I saw some videos online but I am not sure.",
             "Many people learn to do the Epley maneuver at home after it has been shown to them by a doctor or "
             "physiotherapist. It is important to know which ear is affected, since the maneuver is done differently "
             "for each side. Have someone with you, as it can cause brief dizziness. Avoid it if you have severe neck "
             "or back problems, and stop if you get unusual symptoms. If home attempts do not help, see a "
             "specialist."),
            ("Is it safe for me to drive my car to work while I am still having these vertigo episodes?",
             "It is safer not to drive until the episodes have settled, because a sudden spin while turning your head "
             "could cause an accident. Once you have been free of vertigo for some time, driving is usually fine. "
             "Rules differ by country, so check local guidance if your episodes are frequent. Also be careful with "
             "ladders, heights and swimming during this period.")],
    ),
    dict(
        slug="gastroenteritis", who="any", ages=(18, 60),
        s=dict(dur=["a day", "two days", "three days"],
               sym=["loose motions six to seven times a day and stomach cramps", "vomiting and watery diarrhea",
                    "diarrhea with a mild fever and nausea", "watery stools with a lot of gas and cramps"],
               ctx=["It started after eating street food.", "Others at home also have it.",
                    "I had a party dinner the night before it started.", "It started during my travel."],
               tried=["ORS", "curd rice", "bananas and toast", "an anti-diarrhea tablet"]),
        q=["{me}. For {dur} I have had {sym}. {ctx} I have tried {tried}. I feel weak.",
           "{me}. I have had {sym} for {dur}. {ctx} There is no blood in the stool.",
           "{me}. I am suffering from {sym} for {dur}. I have tried {tried}. {ctx}"],
        ask=["Do I need an antibiotic?", "What should I eat?", "How long will this last?",
             "When should I go to the hospital?"],
        why=["In my opinion, this is acute gastroenteritis, an infection of the stomach and intestines, most often "
             "caused by viruses, or sometimes by bacteria from contaminated food or water. It usually settles on its "
             "own within a few days. The main risk is dehydration, so replacing fluids and salts is the most "
             "important treatment.",
             "Sudden diarrhea and vomiting after a suspicious meal or travel suggests infectious gastroenteritis or "
             "food poisoning. Most cases settle by themselves, and antibiotics are not needed unless there are "
             "specific features such as high fever, blood in the stool or severe illness."],
        do=["I suggest oral rehydration solution sipped frequently, especially after each loose stool, along with "
            "other fluids. Eat light foods such as rice, bananas, toast, soups and curd as tolerated, and avoid "
            "alcohol and fatty food. Anti-diarrhea tablets should not be used if there is fever or blood in the "
            "stool. Wash hands well to avoid spreading the infection.",
            "Please focus on rehydration; ORS is better than plain water or sugary drinks. If you are not improving "
            "in two to three days, consult a doctor, who may test a stool sample. Antibiotics are prescribed only if "
            "a bacterial cause is likely, and the doctor will choose the right one."],
        warn=["Please go to a hospital if you have blood in the stool, high fever, severe abdominal pain, cannot keep "
              "fluids down, pass very little urine, feel dizzy or very weak, or if you are elderly, pregnant or have "
              "other serious illnesses.",
              "Signs of dehydration such as a dry mouth, very little urine, dizziness on standing or confusion need "
              "urgent medical care."],
        fu=[("How should I prepare ORS at home if I do not have the packets available right now?",
             "Ready-made ORS packets are best because the balance of salt and sugar is exact, so please buy them if "
             "possible. If you truly cannot, a commonly used home recipe is six level teaspoons of sugar and half a "
             "level teaspoon of salt dissolved in one liter of clean, boiled and cooled water. Measure carefully, "
             "since too much salt can be harmful. Sip it frequently and continue eating light food."),
            ("The diarrhea has stopped, but my stomach still feels upset and I have gas after meals. Is this normal?",
             "Yes, it is common for the gut to take several days to a couple of weeks to fully recover after "
             "gastroenteritis. Some people develop a temporary intolerance to milk during this period. Eat smaller, "
             "simple meals, reduce milk for a few days if it worsens symptoms, and avoid heavy, spicy food. If "
             "symptoms last beyond two weeks, or you have weight loss, blood in the stool or fever, please see a "
             "doctor.")],
    ),
    dict(
        slug="high-cholesterol", who="any", ages=(32, 65),
        s=dict(report=["total cholesterol 250 and LDL 170", "LDL 160 and triglycerides 220", "LDL 190",
                       "triglycerides 320 and HDL 35"],
               ctx=["My father had a heart attack at 55.", "I am slightly overweight.", "I eat a lot of fried food.",
                    "I do not exercise regularly."]),
        q=["{me}. My recent blood test shows {report}. {ctx} I have no symptoms.",
           "{me}. In a routine check-up my lipid profile showed {report}. {ctx} My doctor wants to start a statin "
           "but I am hesitant.",
           "{me} and I was told that my cholesterol is high, with {report}. {ctx} I feel completely fine."],
        ask=["Can I control this with diet alone?", "Are statins safe?", "Is this dangerous for my heart?",
             "What foods should I avoid?"],
        why=["In my opinion, your report shows raised blood fats (dyslipidemia). High LDL cholesterol builds up in the "
             "walls of the arteries over years and increases the risk of heart attack and stroke, while high "
             "triglycerides are often linked to excess weight, sugar, refined carbohydrates and alcohol. It usually "
             "causes no symptoms, which is why testing is important.",
             "These levels are higher than desirable. Whether medicine is needed depends not only on the numbers but "
             "on your overall heart risk, which includes age, blood pressure, smoking, diabetes and family history."],
        do=["I suggest a diet rich in vegetables, fruits, whole grains, pulses and nuts, and low in fried foods, "
            "processed meat, full-fat dairy, sweets and refined carbohydrates. Aim for at least 150 minutes of "
            "exercise a week and lose weight if needed. Please consult your physician to calculate your heart risk; "
            "if medicine is needed, the choice and dose will be decided by them.",
            "Please discuss this with your doctor. Statins are well studied, effective medicines that lower LDL and "
            "reduce heart attacks and strokes. Most people tolerate them well; muscle aches can occur and should be "
            "reported. Lifestyle changes remain important even if medicines are started. A repeat lipid test after "
            "about three months is usual."],
        warn=["Please seek emergency care for chest pain or pressure, breathlessness, sweating, or sudden weakness or "
              "difficulty speaking.",
              "If you get chest discomfort on exertion, or symptoms such as sudden one-sided weakness or facial "
              "drooping, get medical help immediately."],
        fu=[("Does eating eggs increase my cholesterol? I usually eat two eggs every day for breakfast.",
             "For most people, cholesterol from eggs has a smaller effect on blood cholesterol than saturated fat and "
             "the overall diet. An egg a day is generally acceptable as part of a healthy diet, though some people "
             "respond more strongly, and those with diabetes or very high LDL may be advised to limit yolks. Pay more "
             "attention to fried foods, butter, ghee, processed meat and sweets. Your doctor or a dietitian can give "
             "personal advice."),
            ("I started the cholesterol tablet and now my legs ache a little. Should I stop taking it?",
             "Please do not stop it without speaking to your doctor. Muscle aches can occur with statins, although "
             "they are often due to other causes such as exercise, low vitamin D or thyroid problems. Your doctor may "
             "check a blood test and, if needed, change the dose or switch to another medicine. Seek prompt care if "
             "you have severe muscle pain or weakness, or dark, cola-colored urine.")],
    ),
    dict(
        slug="carpal-tunnel-syndrome", who="any", ages=(30, 62),
        s=dict(dur=MED[1:] + LONG[:2],
               hand=["right hand", "left hand"],
               sym=["numbness and tingling in the thumb, index and middle fingers",
                    "tingling in the fingers that wakes me at night", "a weak grip, so that I drop things",
                    "burning pain in the fingers that gets better when I shake the hand"],
               job=["I type on a computer all day.", "I work as a tailor.", "I do a lot of housework.",
                    "I have an underactive thyroid."]),
        q=["{me}. For {dur}, in my {hand}, I have had {sym}. {job} It is worse at night.",
           "{me}. {job} Recently, in my {hand}, I have developed {sym}. This has been going on for {dur}.",
           "{me}. In my {hand} I have {sym}, and it has been {dur}. {job} I tried a wrist band but it did not help."],
        ask=["Is this carpal tunnel syndrome?", "Will I need surgery?", "What tests should I do?",
             "What can I do at home?"],
        why=["In my opinion, your symptoms suggest carpal tunnel syndrome, where the median nerve is compressed as it "
             "passes through a tunnel at the wrist. It typically causes numbness and tingling in the thumb, index and "
             "middle fingers, worse at night, and sometimes a weak grip. It is linked to repetitive hand use, "
             "pregnancy, diabetes, hypothyroidism and arthritis.",
             "Night-time tingling of the thumb and first fingers that improves with shaking the hand is very typical "
             "of carpal tunnel syndrome. A nerve conduction study can confirm the diagnosis and show how severe it "
             "is."],
        do=["I suggest a wrist splint at night that keeps the wrist straight, regular breaks from repetitive "
            "activity, and adjusting your keyboard and work position. Please consult an orthopedic doctor or "
            "neurologist for an examination and a nerve conduction study if needed. A steroid injection may give "
            "relief in some cases, and for persistent or severe symptoms a minor surgery to release the nerve is "
            "very effective.",
            "Please see your doctor to check for related conditions such as diabetes and thyroid problems. Mild cases "
            "often improve within a few weeks with a night splint and activity changes. If you notice wasting of the "
            "muscles at the base of the thumb or constant numbness, earlier surgery may be advised to protect the "
            "nerve."],
        warn=["Please see a doctor promptly if you have constant numbness, weakness or wasting of the thumb muscles, "
              "or if symptoms spread to the whole arm or come with neck pain.",
              "Sudden weakness of the hand or arm, especially with facial drooping or difficulty speaking, is an "
              "emergency."],
        fu=[("How long do I need to wear the wrist splint, and should I wear it during the day as well?",
             "The splint is mainly worn at night, because most people bend their wrists during sleep, which increases "
             "pressure on the nerve. Wear it every night for at least four to six weeks and see whether symptoms "
             "improve. You can also wear it during activities that bring on symptoms, but avoid wearing it all day, "
             "as the wrist can become stiff. If there is no improvement, see your doctor for further options."),
            ("What is the carpal tunnel surgery like, and how long will it be before I can use my hand again?",
             "Carpal tunnel release is a common short operation, usually done under local anesthesia as a day "
             "procedure. The surgeon divides the ligament forming the roof of the tunnel to relieve pressure on the "
             "nerve. Light use of the hand is encouraged soon after, while heavy gripping is avoided for a few weeks. "
             "Night tingling often improves quickly, but numbness and strength may take months to recover, "
             "especially if the compression was long-standing.")],
    ),
    dict(
        slug="depression", who="any", ages=(20, 55),
        s=dict(dur=MED[1:],
               sym=["feeling low and empty most of the day", "losing interest in things I used to enjoy",
                    "feeling tired, unmotivated and hopeless", "crying easily and feeling worthless"],
               extra=["I sleep too much", "I cannot sleep properly", "my appetite has gone down",
                      "I have stopped meeting friends"],
               ctx=["after losing my job", "after a breakup", "after moving to a new city",
                    "without any clear reason"]),
        q=["{me}. For {dur} I have been {sym}. Also, {extra}. It started {ctx}.",
           "{me}. It started {ctx}, and now for {dur} I keep {sym}. {extra_cap}, and I find it hard to go to work.",
           "{me}. I do not know what is happening to me. For {dur} I have been {sym}, and {extra}. My family thinks I "
           "am just lazy."],
        ask=["Is this depression?", "Will I need medicines?", "How can I feel like myself again?",
             "Whom should I consult?"],
        why=["Thank you for sharing this; it takes courage. In my opinion, persistent low mood, loss of interest, "
             "tiredness and changes in sleep and appetite lasting more than two weeks suggest depression. Depression "
             "is a common medical condition, not laziness or weakness, and it is treatable.",
             "What you describe sounds like a depressive episode, which can follow stressful life events or sometimes "
             "appear without a clear reason. Thyroid problems, anemia and vitamin deficiencies can cause similar "
             "tiredness, so a basic check-up is also useful."],
        do=["I suggest consulting a psychiatrist or psychologist for a proper assessment. Treatment may include "
            "talking therapy such as cognitive behavioral therapy and, depending on severity, antidepressant "
            "medicines prescribed by a doctor, which are not addictive. Small daily steps help: regular sleep times, "
            "a short walk outdoors, regular meals, and staying in touch with people you trust. Please avoid alcohol.",
            "Please talk to your doctor, who can check for physical causes and arrange therapy or treatment. It can "
            "help to share how you feel with a trusted family member or friend. Try to plan small, achievable "
            "activities each day, even if you do not feel like it, as activity often improves mood gradually."],
        warn=["If you have any thoughts of harming yourself or feel that life is not worth living, please reach out "
              "immediately to emergency services, a crisis helpline or the nearest hospital, and tell someone close "
              "to you.",
              "Please seek help urgently if you feel hopeless, have thoughts of self-harm or suicide, or are unable to "
              "look after yourself; you do not have to go through this alone."],
        fu=[("My doctor prescribed an antidepressant. How long will it take to work, and how long will I need to "
             "take it?",
             "Antidepressants usually take two to four weeks to start working and six to eight weeks for the full "
             "effect, and some people have mild side effects at first that settle. After you feel better, doctors "
             "commonly advise continuing for at least six months to reduce the chance of relapse. The exact medicine "
             "and dose are decided by your doctor. Do not stop it suddenly, and report any worsening mood or "
             "thoughts of self-harm immediately."),
            ("Can I recover with counselling and exercise alone, without taking any medicines at all?",
             "For mild to moderate depression, talking therapies such as cognitive behavioral therapy, together with "
             "regular physical activity, can be very effective, and many people recover without medicines. For more "
             "severe depression, a combination of therapy and medication often works best. Your doctor or therapist "
             "can help decide what suits you. If your mood gets worse or you have thoughts of self-harm, please seek "
             "help immediately.")],
    ),
    dict(
        slug="mouth-ulcers", who="any", ages=(18, 50),
        s=dict(dur=["five days", "a week", "ten days"],
               sym=["painful white ulcers inside my lips", "small round ulcers on my tongue",
                    "mouth ulcers that make eating difficult", "two or three painful ulcers on the inner cheek"],
               ctx=["They come back every month.", "They appear when I am stressed or do not sleep well.",
                    "They started after I bit my cheek.", "I also suffer from acidity."],
               tried=["a mouth gel", "vitamin B complex tablets", "salt water gargles", "applying honey"]),
        q=["{me}. I have had {sym} for {dur}. {ctx} I have tried {tried}.",
           "{me}. For {dur} I have been suffering from {sym}. {ctx} Spicy food burns a lot.",
           "{me}. I keep getting mouth ulcers. {ctx} This time I have {sym}, and it has been {dur}. I have tried "
           "{tried} without relief."],
        ask=["Why do I keep getting ulcers?", "Which medicine will heal them quickly?",
             "Is this a vitamin deficiency?", "Should I be worried?"],
        why=["In my opinion, these are most likely aphthous ulcers, which are common painful ulcers of the mouth "
             "lining. They often recur and are linked to stress, minor injury, lack of sleep, certain toothpastes and "
             "sometimes a lack of iron, vitamin B12 or folate. They are not contagious and usually heal within one to "
             "two weeks.",
             "Recurrent small painful ulcers that heal on their own are typical of aphthous stomatitis. When they are "
             "very frequent, it is worth checking for deficiencies or for conditions such as celiac disease or "
             "inflammatory bowel disease."],
        do=["I suggest avoiding spicy, salty and acidic foods while the ulcers are present, using a soft toothbrush, "
            "and rinsing with warm salt water. Pharmacy ulcer gels or antiseptic mouthwashes can reduce pain. If they "
            "recur often, please consult a doctor for blood tests such as hemoglobin, B12, folate and ferritin. A "
            "toothpaste without sodium lauryl sulfate may reduce recurrences.",
            "Please consult a dentist or doctor if the ulcers are frequent. They can prescribe a medicated gel or "
            "paste to speed healing. Managing stress and getting enough sleep help reduce episodes."],
        warn=["Please see a doctor or dentist promptly if an ulcer lasts more than three weeks, is painless and hard, "
              "or bleeds easily, especially if you smoke or chew tobacco, as it must be examined to rule out cancer. "
              "Also seek care for fever, weight loss or genital ulcers.",
              "An ulcer that does not heal within three weeks, a red or white patch in the mouth, or a lump in the "
              "neck needs examination without delay."],
        fu=[("I have been taking vitamin B complex for months, but the ulcers still keep coming. Do I need some "
             "test?",
             "Vitamin B complex helps only if there is a specific deficiency. Since the ulcers keep coming despite "
             "it, it is reasonable to get blood tests for hemoglobin, ferritin, vitamin B12 and folate, and sometimes "
             "a test for celiac disease, especially if you have bowel symptoms or weight loss. Your doctor may also "
             "look for other causes if you have ulcers elsewhere or joint or eye problems."),
            ("Can I apply a steroid gel on the ulcers? A friend of mine uses one and says it works fast.",
             "A mild steroid paste or gel can help some aphthous ulcers heal faster, but it should be used only after "
             "a doctor or dentist has examined the ulcers and confirmed the diagnosis, because steroids are not "
             "suitable for infections such as oral thrush or herpes. Please do not use your friend's medicine. Ask "
             "your doctor for a suitable preparation and how long to use it.")],
    ),
    dict(
        slug="shoulder-pain", who="any", ages=(40, 65),
        s=dict(dur=MED[1:] + LONG[:2],
               side=["right", "left"],
               sym=["pain and stiffness, so I cannot raise my arm fully", "pain when I lift my arm above my head",
                    "pain at night when I lie on that side", "difficulty putting my hand behind my back"],
               ctx=["I have diabetes.", "It started after I painted the house.", "There was no injury.",
                    "I play badminton regularly."]),
        q=["{me}. My {side} shoulder has been troubling me for {dur}. I have {sym}. {ctx}",
           "{me}. For {dur} my {side} shoulder hurts and I have {sym}. {ctx}",
           "{me}. It is my {side} shoulder. For {dur} I have had {sym}. {ctx} I have tried a pain relief gel and "
           "hot fomentation."],
        ask=["Is this frozen shoulder?", "What exercises should I do?", "Do I need an MRI?",
             "Will I need an injection?"],
        why=["In my opinion, shoulder pain with restricted movement can be due to frozen shoulder, where the joint "
             "capsule becomes inflamed and stiff, or to a rotator cuff problem, where the tendons that lift the arm "
             "are irritated. Frozen shoulder is more common in people with diabetes and between forty and sixty "
             "years of age, and it limits movement in all directions.",
             "Pain on lifting the arm overhead and at night when lying on the shoulder is typical of rotator cuff "
             "tendinopathy, while severe stiffness in all directions suggests frozen shoulder. An examination usually "
             "tells them apart, and an ultrasound or MRI is needed only in selected cases."],
        do=["I suggest gentle range-of-motion exercises such as pendulum swings and walking the fingers up a wall, "
            "several times a day within tolerable pain, with heat before exercise. Simple pain relief at label doses "
            "can help. Avoid heavy overhead activity for now. An orthopedic doctor or physiotherapist can guide you, "
            "and a steroid injection may help in some cases. Good sugar control also helps recovery in diabetes.",
            "Please see an orthopedic doctor for an examination. Physiotherapy is the main treatment for both "
            "conditions. Frozen shoulder usually improves slowly over many months, while rotator cuff problems often "
            "improve within weeks to a few months with exercises."],
        warn=["Please seek urgent care if the shoulder pain comes with chest pain, breathlessness or sweating, if the "
              "shoulder is hot and swollen with fever, or if you cannot lift the arm at all after an injury.",
              "Left shoulder or arm pain with chest tightness, sweating or breathlessness can come from the heart and "
              "needs emergency evaluation."],
        fu=[("The doctor suggested a steroid injection in my shoulder. Is it safe, and will it affect my blood "
             "sugar?",
             "A shoulder steroid injection is a common and generally safe procedure that can reduce pain and help you "
             "do exercises more comfortably. In people with diabetes, blood sugar can rise for a few days afterwards, "
             "so check your sugar more often and contact your doctor if readings are very high. Injections are "
             "usually not repeated too often. Continue physiotherapy, as the injection works best together with "
             "exercises."),
            ("How long does a frozen shoulder take to get better completely? It is affecting my daily work.",
             "Frozen shoulder usually goes through phases: a painful freezing phase, a stiff frozen phase, and a "
             "thawing phase when movement gradually returns. The whole process can take from several months to two "
             "years or more, but with regular exercises and pain control most people regain good function. If "
             "progress is very slow, your doctor may discuss other options such as hydrodilatation or, rarely, a "
             "procedure to release the shoulder.")],
    ),
]

# --------------------------------------------------------------------------
# Combiner
# --------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def join(*parts: str) -> str:
    return re.sub(r"\s+", " ", " ".join(p for p in parts if p)).strip()


def fill(template: str, slots: dict) -> str:
    return template.format_map(slots)


def pick_slots(rng: random.Random, topic: dict) -> dict:
    """Choose one value per slot of the topic, plus age, sex words and the self-introduction."""
    sex = topic["who"] if topic["who"] != "any" else rng.choice("fm")
    age = rng.randint(*topic["ages"])
    if sex == "f":
        noun, adj = ("girl" if age < 18 else "woman"), "female"
    else:
        noun, adj = ("boy" if age < 18 else "man"), "male"
    art = "an" if age in (8, 11, 18) or 80 <= age <= 89 else "a"
    slots = {"age": age, "noun": noun, "adj": adj, "a": art}
    slots["me"] = rng.choice(ME).format_map(slots)
    for key, values in topic["s"].items():
        slots[key] = rng.choice(values)
    for key, value in list(slots.items()):
        if isinstance(value, str) and value:
            slots[key + "_cap"] = value[0].upper() + value[1:]
    return slots


def make_question(rng: random.Random, topic: dict, slots: dict) -> str:
    body = fill(rng.choice(topic["q"]), slots)
    hist = rng.choice(HIST) if topic.get("hist", True) and rng.random() < 0.3 else ""
    signoff = rng.choice(SIGNOFF) if rng.random() < 0.35 else ""
    return join(rng.choice(GREET), body, hist, rng.choice(topic["ask"]), signoff)


def make_answer(rng: random.Random, topic: dict, slots: dict, used: set[str]) -> str:
    """Opening + explanation + advice + red flags + closing: unique, within the allowed word range."""
    lo, hi = A_WORDS
    for _ in range(200):
        text = join(rng.choice(OPEN), fill(rng.choice(topic["why"]), slots), fill(rng.choice(topic["do"]), slots),
                    fill(rng.choice(topic["warn"]), slots), rng.choice(CLOSE))
        if lo <= words(text) <= hi and text not in used:
            used.add(text)
            return text
    raise AssertionError(f"{topic['slug']}: no answer combination fits {A_WORDS} words")


def make_followup(rng: random.Random, fu: tuple[str, str], used: set[str], seen: set[str]) -> tuple[str, str]:
    """Follow-up exchange; `seen` holds the stock phrases already used in this dialogue, so none repeats."""
    for _ in range(50):
        pre = rng.choice([p for p in FU_PRE if p not in seen])
        question = join(pre, fu[0])
        if question not in used:
            break
    else:
        raise AssertionError(f"no unique follow-up question for: {fu[0]}")
    opening = rng.choice([o for o in FU_OPEN if o not in seen])
    seen.update((pre, opening))
    answer = join(opening, fu[1], rng.choice(FU_CLOSE))
    return question, answer


def generate(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    order = [TOPICS[i % len(TOPICS)] for i in range(N_DIALOGUES)]
    rng.shuffle(order)
    multi = rng.sample(range(N_DIALOGUES), N_MULTI)
    three = set(multi[:N_THREE])
    multi = set(multi)
    used: set[str] = set()  # every user message in the file is unique
    used_answers: set[str] = set()  # and so is every first answer
    dialogues = []
    for i, topic in enumerate(order):
        for _ in range(200):
            slots = pick_slots(rng, topic)
            question = make_question(rng, topic, slots)
            if question not in used:
                break
        else:
            raise AssertionError(f"{topic['slug']}: could not make a unique question")
        used.add(question)
        messages = [{"role": "user", "content": question},
                    {"role": "assistant", "content": make_answer(rng, topic, slots, used_answers)}]
        if i in multi:
            seen: set[str] = set()
            for fu in rng.sample(topic["fu"], 2 if i in three else 1):
                fq, fa = make_followup(rng, fu, used, seen)
                used.add(fq)
                messages += [{"role": "user", "content": fq}, {"role": "assistant", "content": fa}]
        dialogues.append({"id": f"sample-{i + 1:04d}", "topic": topic["slug"], "messages": messages})
    return dialogues


def check(dialogues: list[dict]) -> dict:
    """Assert the dataset's contract and return summary statistics."""
    assert len(dialogues) == N_DIALOGUES
    assert len({d["id"] for d in dialogues}) == N_DIALOGUES
    first_questions = [d["messages"][0]["content"] for d in dialogues]
    assert len(set(first_questions)) == N_DIALOGUES, "duplicate first question"
    user_turns = [m["content"] for d in dialogues for m in d["messages"] if m["role"] == "user"]
    assert len(set(user_turns)) == len(user_turns), "duplicate user message"
    assert len({d["messages"][1]["content"] for d in dialogues}) == N_DIALOGUES, "duplicate first answer"
    q_words, a_words = [], []
    for d in dialogues:
        msgs = d["messages"]
        assert len(msgs) in (2, 4, 6), d["id"]
        for k, m in enumerate(msgs):
            assert set(m) == {"role", "content"}, d["id"]
            assert m["role"] == ("user" if k % 2 == 0 else "assistant"), d["id"]
            assert m["content"].isascii() and "{" not in m["content"] and "  " not in m["content"], d["id"]
            n = words(m["content"])
            lo, hi = Q_WORDS if m["role"] == "user" else A_WORDS
            assert lo <= n <= hi, (d["id"], m["role"], n)
            (q_words if m["role"] == "user" else a_words).append(n)
    turns = Counter(len(d["messages"]) // 2 for d in dialogues)
    topics = Counter(d["topic"] for d in dialogues)
    assert len(topics) >= 40
    return {
        "dialogues": len(dialogues),
        "exchanges": dict(sorted(turns.items())),
        "multi_turn_share": round(1 - turns[1] / len(dialogues), 3),
        "topics": len(topics),
        "per_topic_min_max": (min(topics.values()), max(topics.values())),
        "unique_first_questions": len(set(first_questions)),
        "user_words_min_max_mean": (min(q_words), max(q_words), round(sum(q_words) / len(q_words), 1)),
        "assistant_words_min_max_mean": (min(a_words), max(a_words), round(sum(a_words) / len(a_words), 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSONL path")
    args = parser.parse_args()
    dialogues = generate()
    stats = check(dialogues)
    text = "".join(json.dumps(d, ensure_ascii=True) + "\n" for d in dialogues)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {args.out} ({len(dialogues)} dialogues, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]})")
    for key, value in stats.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
