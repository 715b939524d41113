"""Demo content for `manage.py seed_demo`: posts on real probation inspections.

The commentary is written for this project; facts (areas, organisations, dates, ratings)
follow the public inspection reports as closely as we know them.

Where a date or a standard-level rating could not be checked against the report itself,
a comment next to it says so. Overall ratings, publication months and the figures quoted
in the posts come from the inspectorate's announcements and press reports of them.
"""

REGIONS = [
    {"slug": "east-of-england", "name": "East of England"},
    {"slug": "south-east", "name": "South East"},
    {"slug": "wales", "name": "Wales"},
    {"slug": "east-midlands", "name": "East Midlands"},
]

AREAS = [
    {"slug": "suffolk", "name": "Suffolk", "region": "east-of-england"},
    {"slug": "hertfordshire", "name": "Hertfordshire", "region": "east-of-england"},
    {
        "slug": "hampshire-and-isle-of-wight",
        "name": "Hampshire and Isle of Wight",
        "region": "south-east",
    },
    {"slug": "surrey", "name": "Surrey", "region": "south-east"},
    {"slug": "cardiff", "name": "Cardiff", "region": "wales"},
    {
        "slug": "leicester-leicestershire-and-rutland",
        "name": "Leicester, Leicestershire and Rutland",
        "region": "east-midlands",
    },
    {"slug": "derby", "name": "Derby", "region": "east-midlands"},
    {"slug": "nottingham", "name": "Nottingham", "region": "east-midlands"},
]

ORGANISATIONS = [
    # Owners of Community Rehabilitation Companies (2015-2021).
    {
        "slug": "sodexo-justice-services",
        "name": "Sodexo Justice Services",
        "kind": "owner",
        "owners": [],
    },
    {"slug": "nacro", "name": "Nacro", "kind": "owner", "owners": []},
    {"slug": "purple-futures", "name": "Purple Futures", "kind": "owner", "owners": []},
    {"slug": "interserve", "name": "Interserve", "kind": "owner", "owners": []},
    # Community Rehabilitation Companies: low and medium risk cases until June 2021.
    {
        "slug": "norfolk-and-suffolk-crc",
        "name": "Norfolk and Suffolk Community Rehabilitation Company",
        "kind": "crc",
        "owners": ["sodexo-justice-services", "nacro"],
    },
    {
        "slug": "hampshire-and-isle-of-wight-crc",
        "name": "Hampshire and Isle of Wight Community Rehabilitation Company",
        "kind": "crc",
        "owners": ["purple-futures", "interserve"],
    },
    # National Probation Service: high risk cases until unification in June 2021.
    {
        "slug": "nps-south-east-and-eastern",
        "name": "National Probation Service - South East and Eastern division",
        "kind": "nps",
        "owners": [],
    },
    # Youth offending services, run by local authorities with their partners.
    {
        "slug": "hertfordshire-yot",
        "name": "Hertfordshire Youth Offending Team",
        "kind": "yot",
        "owners": [],
    },
    {
        "slug": "surrey-yos",
        "name": "Surrey Youth Offending Service",
        "kind": "yot",
        "owners": [],
    },
    {
        "slug": "cardiff-yos",
        "name": "Cardiff Youth Offending Service",
        "kind": "yot",
        "owners": [],
    },
    # The unified Probation Service (from June 2021) and its parent agency.
    {
        "slug": "hmpps",
        "name": "HM Prison and Probation Service",
        "kind": "other",
        "owners": [],
    },
    {
        "slug": "probation-service-east-midlands",
        "name": "Probation Service - East Midlands region",
        "kind": "other",
        "owners": [],
    },
    {
        "slug": "llr-pdu",
        "name": "Leicester, Leicestershire and Rutland PDU",
        "kind": "pdu",
        "owners": [],
    },
    {"slug": "derby-city-pdu", "name": "Derby City PDU", "kind": "pdu", "owners": []},
    {
        "slug": "nottingham-city-pdu",
        "name": "Nottingham City PDU",
        "kind": "pdu",
        "owners": [],
    },
]

CATEGORIES = [
    {"slug": "on-probation", "name": "On Probation"},
    {"slug": "youth-justice", "name": "Youth justice"},
    {"slug": "thematic-inspections", "name": "Thematic inspections"},
    {"slug": "comment", "name": "Comment"},
]

TAGS = [
    {"slug": "public-protection", "name": "Public protection"},
    {"slug": "risk-assessment", "name": "Risk assessment"},
    {"slug": "caseloads", "name": "Caseloads"},
    {"slug": "staffing", "name": "Staffing"},
    {"slug": "unpaid-work", "name": "Unpaid work"},
    {"slug": "through-the-gate", "name": "Through the Gate"},
    {"slug": "resettlement", "name": "Resettlement"},
    {"slug": "domestic-abuse", "name": "Domestic abuse"},
    {"slug": "safeguarding", "name": "Safeguarding"},
    {"slug": "transforming-rehabilitation", "name": "Transforming Rehabilitation"},
    {"slug": "unification", "name": "Unification"},
    {"slug": "out-of-court-disposals", "name": "Out-of-court disposals"},
    {"slug": "court-work", "name": "Court work"},
    {"slug": "management-oversight", "name": "Management oversight"},
    {"slug": "leadership", "name": "Leadership"},
    {"slug": "accommodation", "name": "Accommodation"},
    {"slug": "recall", "name": "Recall"},
    {"slug": "county-lines", "name": "County lines"},
]

HMIP = "HM Inspectorate of Probation"

POSTS = [
    {
        "slug": "suffolk-probation-inspection-2017",
        "title": "Suffolk probation: far more needed to protect the public",
        "excerpt": (
            "Inspectors found hard-working staff carrying very high caseloads in "
            "Suffolk, and a Sodexo-owned CRC whose work on domestic abuse and child "
            "safeguarding was not good enough."
        ),
        "body": """\
## What was inspected

This was the first full look at adult probation in Suffolk since Transforming
Rehabilitation split the service in two in 2014. HM Inspectorate of Probation examined
both halves: the Norfolk and Suffolk Community Rehabilitation Company, owned by Sodexo
Justice Services in partnership with Nacro, which supervises people assessed as posing
a low or medium risk of serious harm; and the National Probation Service, which keeps
the high-risk cases, advises the courts and manages people under multi-agency public
protection arrangements.

It was a Quality & Impact inspection, the format the inspectorate used before it
introduced ratings in 2018. There is no overall grade, only narrative judgements on
three questions: is reoffending being reduced, is the public being protected, and are
people serving the sentence the court imposed? Suffolk was only the second area in
which inspectors had examined a Sodexo-owned CRC. The
[inspection page](https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/suffolkqi/)
has the full report.

## The CRC: a sound design that had stalled

Sodexo's operating model is built on research into readiness to change, and inspectors
accepted that it made sense on paper. In Suffolk, though, putting it into practice had
ground to a halt. The company had been caught off balance by the transition, and money
questions still unsettled with the Ministry of Justice had left it unable to move on.
The practical consequences were plain:

- too many people were being supervised mainly by telephone, which gives a practitioner
  little chance of building the relationship that change depends on;
- confidential interviews took place in open booths, within earshot of others;
- individual caseloads were very high, and staff morale was low;
- work to protect victims of domestic abuse, and to keep children safe, fell short;
- the CRC needed to do more to make sure people kept to the terms of their orders.

> Put simply, the Chief Inspector's message was that staff in both organisations were
> working hard, but that neither was yet doing enough to protect the public, reduce
> reoffending and see sentences properly served.

## The NPS was stretched too

The National Probation Service holds the more dangerous cases, so its shortcomings
matter more per case. Inspectors did not single out the CRC alone: the report was
addressed to both organisations, and high workloads and staff shortages ran through
the whole county.

## Why it matters

A "low or medium risk" label is a judgement made at the start of an order. Domestic
abuse cases show how quickly it can go out of date: a new relationship, a child in the
household, a call-out the police attended last weekend. Supervision by phone, with no
routine checks with the police and children's services, will not pick that up. This is
where the economics of Transforming Rehabilitation meet public protection, and Suffolk
was an early, clear example.

## What to watch

Three things will tell us whether this report changed anything: how much supervision
still happens by telephone, whether caseloads come down, and whether people can be
interviewed in private.

## Update, September 2019

Inspectors returned to the CRC in May 2019, this time across Norfolk and Suffolk and
under the new ratings framework. It was rated Requires improvement overall, but all four
case supervision standards (assessment, planning, delivery and review) were rated
Inadequate, the first time the inspectorate had given that result. Unpaid work, by
contrast, was rated Outstanding. The CRC closed when probation was unified in June 2021.
""",
        "published": "2017-06-19",
        "categories": ["on-probation", "comment"],
        "tags": [
            "transforming-rehabilitation",
            "domestic-abuse",
            "safeguarding",
            "caseloads",
            "public-protection",
        ],
        "inspection": {
            "inspectorate": HMIP,
            "title": (
                "Quality & Impact inspection: The effectiveness of probation work "
                "in Suffolk"
            ),
            "type": "local",
            "area": "suffolk",
            "organisations": ["norfolk-and-suffolk-crc", "nps-south-east-and-eastern"],
            # Fieldwork dates not checked against the report: spring 2017.
            "fieldwork_start": "2017-03-06",
            "fieldwork_end": "2017-03-17",
            # Press coverage gives 15 or 16 June 2017.
            "published": "2017-06-15",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/suffolkqi/"
            ),
            "overall": None,
            "ratings": [
                {"standard": "Reducing reoffending", "rating": "narrative"},
                {"standard": "Protecting the public", "rating": "narrative"},
                {"standard": "Abiding by the sentence", "rating": "narrative"},
            ],
            # Number of recommendations not checked against the report.
            "recommendations": 6,
            "key_findings": [
                "Staff in both organisations worked hard but carried very high "
                "caseloads.",
                "The CRC relied too heavily on telephone contact to supervise people.",
                "Interviews took place in open booths that offered no privacy.",
                "Work to protect victims of domestic abuse and to keep children safe "
                "was not good enough.",
                "Implementation of Sodexo's operating model in Suffolk had stalled.",
            ],
        },
        "related": [
            {"slug": "hampshire-isle-of-wight-crc-good-2019", "type": "same_theme"},
            {"slug": "hertfordshire-yot-outstanding-2018", "type": "see_also"},
        ],
    },
    {
        "slug": "hertfordshire-yot-outstanding-2018",
        "title": "Hertfordshire youth offending team rated Outstanding",
        "excerpt": (
            "The first youth offending service to earn the top grade under the "
            "inspectorate's new framework, with court work of an exceptionally high "
            "standard and families involved throughout."
        ),
        "body": """\
## The first Outstanding

HM Inspectorate of Probation began rating youth offending services in 2018, on a
four-point scale against twelve published standards. Hertfordshire was the first to be
rated Outstanding, and it did so as one of the biggest services in England: it handles
the second-highest volume of cases of any youth offending team, and its caseload mixes
children who have offended with others the local authority supports for different
reasons. Essex followed in December 2018.

The inspection looked at three things: how the service is led and organised, the
quality of work with children sentenced by the courts, and the quality of work with
children dealt with out of court, by a caution or a community resolution. The
[inspectorate's announcement](https://www.justiceinspectorates.gov.uk/hmiprobation/?p=7533)
links to the report.

## What inspectors found

- Work with children sentenced by the courts was of an exceptionally high standard.
- Staff were skilled and committed, and kept the child's interests at the centre.
- Parents and carers were involved at every stage, not consulted once at the start.
- A wide range of services was on offer, including help into education and training.
- Only a small number of areas needed attention.

> In paraphrase, Dame Glenys Stacey's point was that good youth justice work rests on
> relationships: staff have to earn a child's trust while still challenging them, and in
> Hertfordshire that was happening case after case.

## What outstanding looks like in practice

Ratings can make excellence sound abstract. In a youth offending service it comes down
to ordinary things done consistently. An assessment explains why this child offended,
not just what they did. A plan is written with the child and their family, in words they
recognise. Someone checks whether the plan is working and changes it when it is not.
Risks to the child, and from the child, are both written down and both acted on.

Hertfordshire's size makes that consistency harder, not easier. A large team has more
new staff, more handovers and more chances for a case to drift. That the quality held
across the sample says a good deal about management oversight and training.

## A note of caution

Youth justice is not adult probation. Caseloads have fallen sharply over the past
decade, local authorities fund and run the services, and partners such as health and
education are part of the team by law. Adult probation services facing caseloads of
sixty or seventy cannot simply copy the model. What they can copy is the discipline of
checking plans against what actually happens, and of involving the people who know the
person best.
""",
        "published": "2018-09-10",
        "categories": ["youth-justice"],
        "tags": ["leadership", "out-of-court-disposals", "court-work", "safeguarding"],
        "inspection": {
            "inspectorate": HMIP,
            "title": "An inspection of youth offending services in Hertfordshire",
            "type": "local",
            "area": "hertfordshire",
            "organisations": ["hertfordshire-yot"],
            # Fieldwork and publication day are approximate: published late summer
            # 2018, before Essex (December 2018).
            "fieldwork_start": "2018-05-14",
            "fieldwork_end": "2018-05-25",
            "published": "2018-09-04",
            "report_url": "https://www.justiceinspectorates.gov.uk/hmiprobation/?p=7533",
            "overall": "outstanding",
            # Standard-level ratings inferred from the published summary; check
            # against the report's ratings table.
            "ratings": [
                {"standard": "1.1 Governance and leadership", "rating": "outstanding"},
                {"standard": "1.2 Staff", "rating": "outstanding"},
                {"standard": "1.3 Partnerships and services", "rating": "outstanding"},
                {"standard": "1.4 Information and facilities", "rating": "good"},
                {
                    "standard": "2.1 Assessment (court disposals)",
                    "rating": "outstanding",
                },
                {"standard": "2.2 Planning (court disposals)", "rating": "outstanding"},
                {
                    "standard": "2.3 Implementation and delivery (court disposals)",
                    "rating": "outstanding",
                },
                {
                    "standard": "2.4 Reviewing (court disposals)",
                    "rating": "outstanding",
                },
                {"standard": "3.1 Assessment (out-of-court)", "rating": "good"},
                {"standard": "3.2 Planning (out-of-court)", "rating": "good"},
                {
                    "standard": "3.3 Implementation and delivery (out-of-court)",
                    "rating": "outstanding",
                },
                {"standard": "3.4 Joint working (out-of-court)", "rating": "good"},
            ],
            # Number of recommendations not checked against the report.
            "recommendations": 3,
            "key_findings": [
                "Work with children sentenced by the courts was exceptionally good.",
                "Parents and carers were involved at every stage.",
                "A wide range of services supported children into education and "
                "training.",
                "Only a small number of areas for improvement were identified.",
            ],
        },
        "related": [
            {"slug": "surrey-yos-inadequate-2019", "type": "same_theme"},
            {"slug": "cardiff-yos-inadequate-2020", "type": "see_also"},
        ],
    },
    {
        "slug": "hampshire-isle-of-wight-crc-good-2019",
        "title": "Hampshire and Isle of Wight: first CRC rated Good, with a warning",
        "excerpt": (
            "Inspectors gave a privately run probation company a Good rating for the "
            "first time, then warned that cuts to its qualified staff put that quality "
            "at risk."
        ),
        "body": """\
## A first, of sorts

After a run of mostly Requires improvement ratings for Community Rehabilitation
Companies, Hampshire and Isle of Wight CRC became the first to be rated Good. It is one
of five CRCs run by Purple Futures, the consortium led by Interserve, and at the time
of the inspection in January 2019 it supervised nearly 4,000 people assessed as low or
medium risk, some serving community sentences and some leaving or recently released
from prison. The [inspectorate's announcement](https://www.justiceinspectorates.gov.uk/hmiprobation/media/press-releases/2019/05/hiowcrc/)
links to the full report.

## Where it was strong

- Senior leaders were knowledgeable and energetic, and were working with academic
  researchers on evidence-based plans.
- Information systems and premises were rated Outstanding, which is unusual for a CRC.
- Initial assessment and planning of cases were rated Good.
- The unpaid work scheme was well established, well supervised and kept rehabilitation
  in view.

## Where it was not

The quality of work fell away after the first few weeks of an order. Delivery of the
plan was weaker than the plan itself, and reviewing of cases was rated Inadequate:
circumstances changed and the record did not. Work to understand and manage risk of harm
to others needed to improve. Through the Gate resettlement services, and staffing,
were both rated Requires improvement.

## The warning

The rating came with an unusually direct caveat. The owners had decided to reduce the
proportion of professionally qualified staff. Almost a quarter of the probation officers
had been seconded to the National Probation Service, and recruiting less experienced
replacements was taking longer than planned. In the meantime practitioners were holding
around 70 cases each, and new starters were not expected to be in post until the autumn.

> The Chief Inspector's view, in paraphrase: the CRC had the essentials of a good
> service, but it no longer had enough staff of the right calibre to keep delivering
> one, and the financial pressure on every CRC was the reason.

## Reading the rating

It is tempting to treat a Good rating as a settled fact about an organisation. It is
better read as a snapshot of casework done over the previous months by the people then
in post. Here the report itself said the snapshot was about to change. A service that
reviews its cases poorly is already relying on experienced staff to notice when things
shift; take those staff away and the weakness compounds.

For readers following the Transforming Rehabilitation story, the lesson is that even the
best-run CRC was making staffing decisions driven by a contract that did not pay enough.
We will be watching the return visit closely.
""",
        "published": "2019-05-13",
        "categories": ["on-probation"],
        "tags": [
            "transforming-rehabilitation",
            "staffing",
            "caseloads",
            "unpaid-work",
            "through-the-gate",
        ],
        "inspection": {
            "inspectorate": HMIP,
            "title": (
                "An inspection of Hampshire and Isle of Wight Community Rehabilitation "
                "Company"
            ),
            "type": "local",
            "area": "hampshire-and-isle-of-wight",
            "organisations": ["hampshire-and-isle-of-wight-crc"],
            # Fieldwork in January 2019; exact days not checked.
            "fieldwork_start": "2019-01-14",
            "fieldwork_end": "2019-01-25",
            "published": "2019-05-08",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/media/"
                "press-releases/2019/05/hiowcrc/"
            ),
            "overall": "good",
            # Leadership, services and unpaid work ratings inferred from the summary;
            # the others are as reported.
            "ratings": [
                {"standard": "1.1 Leadership", "rating": "good"},
                {"standard": "1.2 Staff", "rating": "requires_improvement"},
                {"standard": "1.3 Services", "rating": "good"},
                {"standard": "1.4 Information and facilities", "rating": "outstanding"},
                {"standard": "2.1 Assessment", "rating": "good"},
                {"standard": "2.2 Planning", "rating": "good"},
                {
                    "standard": "2.3 Implementation and delivery",
                    "rating": "requires_improvement",
                },
                {"standard": "2.4 Reviewing", "rating": "inadequate"},
                {"standard": "3.1 Unpaid work", "rating": "good"},
                {"standard": "3.2 Through the Gate", "rating": "requires_improvement"},
            ],
            # Number of recommendations not checked against the report.
            "recommendations": 5,
            "key_findings": [
                "First CRC to be rated Good overall.",
                "Information and facilities were rated Outstanding.",
                "Reviewing of cases was rated Inadequate.",
                "Practitioners held around 70 cases each while replacements were "
                "recruited.",
                "Cuts to qualified staff put the quality of work at risk.",
            ],
        },
        "related": [
            {
                "slug": "hampshire-isle-of-wight-crc-return-visit-2020",
                "type": "follow_up",
            },
            {"slug": "suffolk-probation-inspection-2017", "type": "same_theme"},
        ],
    },
    {
        "slug": "surrey-yos-inadequate-2019",
        "title": "Surrey youth offending service rated Inadequate",
        "excerpt": (
            "Eight of twelve standards were rated Inadequate after a restructure left "
            "Surrey's leaders without a complete picture of the children they were "
            "responsible for."
        ),
        "body": """\
## The rating

HM Inspectorate of Probation inspected Surrey Youth Offending Service in June 2019 and
rated eight of its twelve standards Inadequate, and the service Inadequate overall.
It was one of the first reports published under Justin Russell, who had just taken over
as Chief Inspector. The
[inspectorate's announcement](https://www.justiceinspectorates.gov.uk/hmiprobation/media/press-releases/2019/08/surreyyos2019/)
links to the report.

Surrey had recently been through a large-scale restructure, and new processes were
still bedding in. That context explains some of what inspectors found. It does not
excuse it.

## Three problems

**No single picture of the children.** Information about children who had offended, or
were at risk of offending, sat in several systems that did not talk to each other.
Senior leaders could not see the whole cohort, so they could not plan services to meet
its needs.

**Measuring the wrong thing.** The service leaned on national indicators, especially the
number of first-time entrants to the youth justice system. Surrey's rate was low. A low
rate of first-time entrants can mean a service is diverting children well; it can also
mean children are being diverted without the assessment and support that should go with
it.

**Out-of-court work.** This was the most serious finding. The process for deciding on
cautions and community resolutions was poor and applied inconsistently, and the use of
cautions for serious offences was a particular concern.

Inspectors also found that:

- more than half of the assessments they examined were not good enough, with little
  analysis of why the child had offended or what would help them stop;
- there was no clear reason why some children were not assessed at all;
- staff did not always record the risk a child posed to others, and at times
  underestimated it.

> In paraphrase, the Chief Inspector accepted that diversion can be the right approach,
> but said it has to rest on clear principles that balance public protection against the
> harm of drawing children into the system, and that Surrey's process was neither sound
> nor consistent.

## Diversion is not the problem

It would be easy to read this report as a case against diversion. It is not. Keeping
children out of court is supported by strong evidence, and many services do it well.
What Surrey shows is that diversion is a decision like any other: it needs an
assessment, a record of the reasons and someone who checks the outcome. A service that
cannot see its own caseload in one place will struggle to do any of that.

## What next

Services rated Inadequate are normally re-inspected. The questions for the return visit
are simple: can leaders now see every child they are responsible for, and is each
out-of-court decision made on an assessment rather than on a target?
""",
        "published": "2019-08-23",
        "categories": ["youth-justice"],
        "tags": [
            "out-of-court-disposals",
            "risk-assessment",
            "leadership",
            "management-oversight",
        ],
        "inspection": {
            "inspectorate": HMIP,
            "title": "An inspection of youth offending services in Surrey",
            "type": "local",
            "area": "surrey",
            "organisations": ["surrey-yos"],
            # Fieldwork in June 2019; exact days and publication day not checked
            # (published August 2019).
            "fieldwork_start": "2019-06-03",
            "fieldwork_end": "2019-06-14",
            "published": "2019-08-20",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/media/"
                "press-releases/2019/08/surreyyos2019/"
            ),
            "overall": "inadequate",
            # Eight Inadequate of twelve is as reported; which eight is inferred.
            "ratings": [
                {"standard": "1.1 Governance and leadership", "rating": "inadequate"},
                {"standard": "1.2 Staff", "rating": "requires_improvement"},
                {
                    "standard": "1.3 Partnerships and services",
                    "rating": "requires_improvement",
                },
                {"standard": "1.4 Information and facilities", "rating": "inadequate"},
                {
                    "standard": "2.1 Assessment (court disposals)",
                    "rating": "inadequate",
                },
                {
                    "standard": "2.2 Planning (court disposals)",
                    "rating": "requires_improvement",
                },
                {
                    "standard": "2.3 Implementation and delivery (court disposals)",
                    "rating": "requires_improvement",
                },
                {"standard": "2.4 Reviewing (court disposals)", "rating": "inadequate"},
                {"standard": "3.1 Assessment (out-of-court)", "rating": "inadequate"},
                {"standard": "3.2 Planning (out-of-court)", "rating": "inadequate"},
                {
                    "standard": "3.3 Implementation and delivery (out-of-court)",
                    "rating": "inadequate",
                },
                {
                    "standard": "3.4 Joint working (out-of-court)",
                    "rating": "inadequate",
                },
            ],
            # Number of recommendations not checked against the report.
            "recommendations": 8,
            "key_findings": [
                "Eight of twelve standards were rated Inadequate.",
                "Separate recording systems left leaders without a full picture of "
                "the children.",
                "The service relied too much on national measures such as first-time "
                "entrants.",
                "Out-of-court decision-making was poor and inconsistent.",
                "More than half of the assessments inspected were insufficient.",
            ],
        },
        "related": [
            {"slug": "surrey-yos-good-2022", "type": "reinspection"},
            {"slug": "cardiff-yos-inadequate-2020", "type": "same_theme"},
        ],
    },
    {
        "slug": "cardiff-yos-inadequate-2020",
        "title": "Cardiff youth offending service rated Inadequate on every standard",
        "excerpt": (
            "For the first time, inspectors rated all twelve standards of a youth "
            "offending service Inadequate, and escalated three cases for urgent "
            "safeguarding action."
        ),
        "body": """\
## A score of nought

Every youth offending service inspection produces twelve ratings. In Cardiff, in a
joint inspection in January 2020 led by HM Inspectorate of Probation with the police,
health, social care and education inspectorates, all twelve were Inadequate. It was the
first time any service had received that result: a score of nought out of a possible
36. The report was published at the start of July 2020, in the middle of the pandemic;
the [inspectorate's list of inspections](https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/)
has it.

## What went wrong

The problems started at the top. The management board, which brings together the
council, police, probation, health and other partners, had no clear vision, and members
were unsure what they were responsible for or what the children in their care were
facing. Beneath the board:

- there had been no health worker in the team for around eighteen months, and no
  education worker for around nine;
- inductions were poor, policies were out of date and there were gaps in training;
- cases were handed out without regard to a worker's skills, experience or caseload;
- middle managers were too stretched to supervise practice or set priorities;
- in some cases the risk to a child, or from a child, had been underestimated;
- the national mechanism for identifying children exploited by county lines drug
  networks was not being used as it should have been.

Inspectors were concerned enough about three individual cases that they raised them
with senior managers during the inspection for immediate action.

> The Chief Inspector's conclusion, in paraphrase: many of the children known to the
> service had complex needs and difficult histories, and the service was not giving them
> the quality of help that would protect them, protect the public and support them away
> from crime.

## Governance is practice

It is tempting to treat board-level findings as background and case findings as the
real story. Cardiff shows why that is a mistake. A board that does not know its
responsibilities does not notice that the health post has been vacant for a year and a
half. A service without a health worker misses the speech and language needs, the
trauma and the mental health problems that sit behind much offending by children. The
line from the boardroom to the case file is short.

## The response

Since the fieldwork, Cardiff had appointed a new, experienced independent chair for the
management board and committed more money to the service, and the inspectorate said
those early actions gave it some confidence. Fourteen recommendations set out what has
to change. A re-inspection will tell us whether that confidence was justified. Surrey,
rated Inadequate the previous summer, is the comparison to watch.
""",
        "published": "2020-07-06",
        "categories": ["youth-justice", "comment"],
        "tags": ["leadership", "safeguarding", "county-lines", "management-oversight"],
        "inspection": {
            "inspectorate": HMIP,
            "title": "An inspection of youth offending services in Cardiff",
            "type": "local",
            "area": "cardiff",
            "organisations": ["cardiff-yos"],
            # Fieldwork in January 2020; exact days not checked. Published at the
            # start of July 2020 (1 July per Care Inspectorate Wales).
            "fieldwork_start": "2020-01-13",
            "fieldwork_end": "2020-01-24",
            "published": "2020-07-01",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/"
            ),
            "overall": "inadequate",
            "ratings": [
                {"standard": "1.1 Governance and leadership", "rating": "inadequate"},
                {"standard": "1.2 Staff", "rating": "inadequate"},
                {"standard": "1.3 Partnerships and services", "rating": "inadequate"},
                {"standard": "1.4 Information and facilities", "rating": "inadequate"},
                {
                    "standard": "2.1 Assessment (court disposals)",
                    "rating": "inadequate",
                },
                {"standard": "2.2 Planning (court disposals)", "rating": "inadequate"},
                {
                    "standard": "2.3 Implementation and delivery (court disposals)",
                    "rating": "inadequate",
                },
                {"standard": "2.4 Reviewing (court disposals)", "rating": "inadequate"},
                {"standard": "3.1 Assessment (out-of-court)", "rating": "inadequate"},
                {"standard": "3.2 Planning (out-of-court)", "rating": "inadequate"},
                {
                    "standard": "3.3 Implementation and delivery (out-of-court)",
                    "rating": "inadequate",
                },
                {
                    "standard": "3.4 Joint working (out-of-court)",
                    "rating": "inadequate",
                },
            ],
            "recommendations": 14,
            "key_findings": [
                "All twelve standards were rated Inadequate, a first.",
                "The management board lacked a clear vision and members were unsure of "
                "their roles.",
                "The health post had been vacant for around eighteen months.",
                "Three cases were escalated for urgent safeguarding or public "
                "protection action.",
                "County lines referral arrangements were not used consistently.",
            ],
        },
        "related": [
            {"slug": "surrey-yos-inadequate-2019", "type": "same_theme"},
            {"slug": "hertfordshire-yot-outstanding-2018", "type": "see_also"},
        ],
    },
    {
        "slug": "hampshire-isle-of-wight-crc-return-visit-2020",
        "title": "Hampshire and Isle of Wight CRC: the warning came true",
        "excerpt": (
            "A year after rating the CRC Good, inspectors found a sharp decline in "
            "case supervision, which they tied directly to a cost-cutting "
            "restructure of its workforce."
        ),
        "body": """\
## The return visit

When HM Inspectorate of Probation rated Hampshire and Isle of Wight CRC Good in May
2019, it warned that cuts to qualified staff put that quality at risk. Inspectors went
back in March 2020. The lockdown cut the fieldwork short, so there is no overall rating
this time, but what they saw was enough for a clear conclusion: the quality of work with
people under supervision had fallen sharply, and the cause was a shortage of trained,
experienced practitioners. The report is on the
[inspectorate's list of inspections](https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/).

## What changed

The CRC, owned by the Interserve-led Purple Futures consortium, restructured because
its income had fallen. The new operating model assumed a skilled, experienced workforce.
That assumption did not hold:

- the number of senior case managers had fallen by 38 per cent since the previous
  inspection;
- the number of lower-grade case managers had risen, but 45 per cent of them were new to
  the service;
- new staff were being given complex cases beyond their experience;
- more established staff had high workloads, which compromised their work;
- management oversight was stretched and paid too little attention to risk of harm.

By now the CRC was supervising nearly 3,000 people, down from nearly 4,000 a year
earlier.

> In paraphrase, the Chief Inspector said the inspectorate had warned that large changes
> to the workforce would endanger quality, because new probation staff need time to
> build the knowledge, skills and experience that complex cases demand.

## One bright spot

Resettlement work with people leaving prison, which had attracted extra government
funding, was rated Outstanding. Money spent on a specific service bought a visible
improvement in it, which rather makes the point about the rest.

## What the two reports say together

Read side by side, the 2019 and 2020 reports are the clearest single case study of why
the CRC contracts were ended early. The only CRC rated Good in 2018-19 protected its
finances in the way its contract made easiest, by changing the mix of its staff, and
the quality of supervision fell within a year. Nothing in the 2020 report
suggests that leaders were careless or that staff did not care. It suggests a model in
which the cheapest response to a funding gap was the most damaging one.

With probation due to be unified in June 2021, the people now on this CRC's caseload
will transfer to the National Probation Service. It will inherit both the cases and
the lesson: caseload numbers and experience levels belong on the same page as budgets.
""",
        "published": "2020-07-20",
        "categories": ["on-probation", "comment"],
        "tags": [
            "staffing",
            "management-oversight",
            "through-the-gate",
            "transforming-rehabilitation",
            "risk-assessment",
        ],
        "inspection": {
            "inspectorate": HMIP,
            "title": (
                "An inspection of Hampshire and Isle of Wight Community Rehabilitation "
                "Company (2020)"
            ),
            "type": "local",
            "area": "hampshire-and-isle-of-wight",
            "organisations": ["hampshire-and-isle-of-wight-crc"],
            # Fieldwork began in March 2020 and was cut short by the lockdown; the
            # publication day is approximate (mid-July 2020).
            "fieldwork_start": "2020-03-09",
            "fieldwork_end": "2020-03-20",
            "published": "2020-07-16",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/"
            ),
            # Not rated overall: the inspection was cut short by Covid-19.
            "overall": None,
            # Through the Gate rating as reported; case supervision ratings inferred
            # from coverage describing supervision as inadequate.
            "ratings": [
                {"standard": "2.1 Assessment", "rating": "inadequate"},
                {"standard": "2.2 Planning", "rating": "inadequate"},
                {"standard": "2.3 Implementation and delivery", "rating": "inadequate"},
                {"standard": "2.4 Reviewing", "rating": "inadequate"},
                {"standard": "3.2 Through the Gate", "rating": "outstanding"},
            ],
            # Number of recommendations not checked against the report.
            "recommendations": 4,
            "key_findings": [
                "Senior case manager numbers fell by 38 per cent in a year.",
                "45 per cent of lower-grade case managers were new to the service.",
                "New staff held complex cases beyond their experience.",
                "Resettlement work, backed by extra funding, was rated Outstanding.",
                "No overall rating: fieldwork was cut short by the lockdown.",
            ],
        },
        "related": [
            {"slug": "hampshire-isle-of-wight-crc-good-2019", "type": "same_area"},
            {"slug": "omic-pre-release-joint-inspection-2022", "type": "same_theme"},
        ],
    },
    {
        "slug": "surrey-yos-good-2022",
        "title": "Surrey youth offending service: from Inadequate to Good",
        "excerpt": (
            "Three years after an Inadequate rating, Surrey's youth offending service "
            "was rated Good, with strong risk assessment and sound out-of-court "
            "decisions."
        ),
        "body": """\
## The turnaround

In 2019 HM Inspectorate of Probation rated Surrey Youth Offending Service Inadequate,
with out-of-court work a particular concern. Its return in 2022 found an organised,
focused service that knew its children well, and rated it Good. Resettlement work, now
inspected and rated separately under the updated youth standards, was also rated Good.
The [inspectorate's announcement](https://www.justiceinspectorates.gov.uk/hmiprobation/media/press-releases/2022/03/surrey-yos/)
links to the report.

Going from the bottom grade to the second-highest in one inspection cycle is uncommon,
and it is worth being specific about what changed.

## What inspectors found

- Assessment of the risk of harm a child might pose was of high quality, and treated as
  a priority from the start of every case.
- A daily risk briefing brought staff together to discuss individual children and agree
  how to respond.
- Managers and practitioners knew the children under supervision well.
- An impressive range of services was available, matched to each child's needs.
- Out-of-court decisions, including the use of cautions for serious offences, were now
  being made appropriately.

Most of the children supervised were aged 15 to 17, and most were boys: 88 per cent on
both counts. Some were in the care of the local authority and many had complex needs.

> In paraphrase, the Chief Inspector said that children who are assessed properly and
> early get services that fit them, and that this protects both the child and the
> public.

## Why it worked

Set the two reports side by side and the 2019 problems have recognisable answers. A
service whose leaders could not see their whole caseload now talks about individual
children every day. A service that leaned on national indicators now puts the quality
of each risk assessment first. And out-of-court decisions that worried inspectors in
2019 are now judged appropriate.

None of this is exotic. It is the ordinary machinery of a youth justice service, put
back in working order, and it shows that an Inadequate rating can be a starting point
rather than a verdict.

## What still needs attention

The recommendations are modest. The main one asks the service to keep active track of
its staff's training and development needs, which matters in any service whose staff
group changes. The test for Surrey now is to hold this standard while the people who
rebuilt it move on.
""",
        "published": "2022-04-01",
        "categories": ["youth-justice"],
        "tags": ["out-of-court-disposals", "risk-assessment", "resettlement"],
        "inspection": {
            "inspectorate": HMIP,
            "title": "An inspection of youth offending services in Surrey",
            "type": "local",
            "area": "surrey",
            "organisations": ["surrey-yos"],
            # Fieldwork dates and publication day approximate (published late March
            # 2022).
            "fieldwork_start": "2022-01-17",
            "fieldwork_end": "2022-02-04",
            "published": "2022-03-29",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/media/"
                "press-releases/2022/03/surrey-yos/"
            ),
            "overall": "good",
            # Resettlement rating as reported; the others inferred from the summary.
            "ratings": [
                {"standard": "1.1 Governance and leadership", "rating": "good"},
                {"standard": "1.2 Staff", "rating": "good"},
                {"standard": "1.3 Partnerships and services", "rating": "outstanding"},
                {"standard": "1.4 Information and facilities", "rating": "good"},
                {
                    "standard": "2.1 Assessment (court disposals)",
                    "rating": "outstanding",
                },
                {"standard": "2.2 Planning (court disposals)", "rating": "good"},
                {
                    "standard": "2.3 Implementation and delivery (court disposals)",
                    "rating": "good",
                },
                {"standard": "2.4 Reviewing (court disposals)", "rating": "good"},
                {"standard": "3.1 Assessment (out-of-court)", "rating": "good"},
                {"standard": "3.2 Planning (out-of-court)", "rating": "good"},
                {
                    "standard": "3.3 Implementation and delivery (out-of-court)",
                    "rating": "good",
                },
                {
                    "standard": "3.4 Out-of-court disposal policy and provision",
                    "rating": "good",
                },
                {
                    "standard": "4.1 Resettlement policy and provision",
                    "rating": "good",
                },
            ],
            # Number of recommendations not checked against the report.
            "recommendations": 4,
            "key_findings": [
                "Rated Good, up from Inadequate in 2019.",
                "Risk of harm assessment was of high quality.",
                "Daily risk briefings shaped the response to each child.",
                "Out-of-court decisions were now made appropriately.",
                "Resettlement policy and provision were rated Good.",
            ],
        },
        "related": [
            {"slug": "surrey-yos-inadequate-2019", "type": "same_area"},
            {"slug": "cardiff-yos-inadequate-2020", "type": "same_theme"},
        ],
    },
    {
        "slug": "omic-pre-release-joint-inspection-2022",
        "title": "Offender Management in Custody: a model that is not working",
        "excerpt": (
            "A joint inspection by the probation and prisons inspectorates found the "
            "system for preparing prisoners for release too complex, too rigid and "
            "too thinly staffed to work."
        ),
        "body": """\
## What OMiC is

Offender Management in Custody was introduced by HM Prison and Probation Service in
2018. It moved responsibility for managing many prisoners' sentences into the prisons
themselves. Prison offender managers, some of them probation officers, lead on the
sentence, and every prisoner is meant to have a keyworker, a prison officer who meets
them regularly to guide and support them. Community probation staff take over as
release approaches.

Through the Gate, the CRC-era resettlement service, ended with unification in June
2021, so OMiC now carries much of the weight of preparing people for release. This
joint thematic inspection, led by HM Inspectorate of Probation with HM Inspectorate of
Prisons, asked whether it is doing so. The
[inspectorate's announcement](https://www.justiceinspectorates.gov.uk/hmiprobation/media/press-releases/2022/11/omic-pre-release/)
links to the report.

## The findings

The short answer was no. Inspectors described problems running from the design of the
model through to its results:

- the process is long and complicated, and neither staff nor prisoners fully understood
  how it was supposed to work;
- it is a single fixed model, poorly suited to local prisons where people arrive and
  leave quickly;
- staffing was at crisis point in some prisons and some probation regions;
- pre-release contact was good enough to help reduce reoffending in only about a third
  of the cases inspected;
- keywork sessions, the heart of the prison side of the model, were not happening with
  anything like the intended regularity;
- some people left prison with no plan for where they would live, no identification
  and no access to money.

There was one clear positive. Placing senior probation officers inside prisons had
improved communication and helped build a more rehabilitative culture on the wings.

> In paraphrase, Justin Russell called OMiC an ambitious idea with admirable intentions
> that simply was not working, and said it should be reviewed and overhauled as soon as
> possible.

## Comment

It is unusual for an inspectorate to call for a national operating model to be rebuilt
rather than improved. The recommendation is justified by the basics. A person leaving
prison needs three things on the day: somewhere to sleep, a way to prove who they are,
and enough money to get through the first week. Failing on those is not a matter of
fine-tuning.

The finding about staffing is the one that will outlast the rest. A model that depends
on regular keywork and timely handovers cannot work in prisons that are short of
officers, handing over to probation teams that are short of probation officers.
Redesigning the paperwork will not fix that.

The inspectorate is following the same prisoners after release; that second report
will show what these gaps cost.
""",
        "published": "2022-11-04",
        "categories": ["thematic-inspections", "on-probation"],
        "tags": ["resettlement", "through-the-gate", "accommodation", "staffing"],
        "inspection": {
            "inspectorate": HMIP,
            "title": (
                "A joint thematic inspection of Offender Management in Custody - "
                "pre-release"
            ),
            "type": "joint",
            "area": None,
            "organisations": ["hmpps"],
            # Fieldwork dates approximate; published at the start of November 2022.
            "fieldwork_start": "2022-02-07",
            "fieldwork_end": "2022-05-27",
            "published": "2022-11-01",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/media/"
                "press-releases/2022/11/omic-pre-release/"
            ),
            "overall": None,
            "ratings": [],
            # Number of recommendations not checked against the report.
            "recommendations": 9,
            "key_findings": [
                "The OMiC model was too complex and too rigid, and poorly understood.",
                "Staffing was at crisis point in some prisons and probation regions.",
                "Pre-release contact was sufficient in only about a third of cases.",
                "Some people left prison without accommodation, ID or money.",
                "Senior probation officers in prisons had improved communication.",
            ],
        },
        "related": [
            {"slug": "omic-post-release-thematic-2023", "type": "follow_up"},
            {
                "slug": "hampshire-isle-of-wight-crc-return-visit-2020",
                "type": "same_theme",
            },
        ],
    },
    {
        "slug": "leicester-leicestershire-rutland-pdu-inadequate-2023",
        "title": "Leicester, Leicestershire and Rutland PDU rated Inadequate",
        "excerpt": (
            "The probation delivery unit scored two points out of 27, with a court "
            "team missing 43 per cent of its staff and risk management sufficient in "
            "barely a third of cases."
        ),
        "body": """\
## Two points out of 27

Since probation was unified in June 2021, HM Inspectorate of Probation has inspected
the Probation Service one probation delivery unit (PDU) at a time. The unit covering
Leicester, Leicestershire and Rutland, one of the largest by caseload, was inspected in
November 2022 and rated Inadequate. It scored two points out of a possible 27. The
[inspectorate's announcement](https://hmiprobation.justiceinspectorates.gov.uk/?p=1458)
links to the report, published on the same day as the report on
[Derby City](/posts/derby-city-pdu-requires-improvement-2023/).

## The findings

Inspectors described a unit operating close to crisis management. Workloads were
excessive and morale was low, although staff remained committed. The sharpest findings
concerned the court team and the management of risk:

- the court team had a vacancy rate of 43 per cent;
- as a result people were being sentenced without sufficient assessment, and without
  the safeguarding enquiries that should inform a proposal to the court;
- only 5 per cent of the court work inspectors examined was good enough;
- arrangements to manage identified risks were sufficient in 34 of the 93 relevant
  cases;
- many people were released from prison without suitable plans to support them.

> In paraphrase, Justin Russell said the unit was far from alone: high workloads and
> difficulty recruiting and keeping staff were the national picture, and without enough
> people no service can supervise effectively or keep the public safe.

## Why the court finding matters most

Court work is where probation shapes everything that follows. A pre-sentence report that
has checked with the police about domestic abuse call-outs and with children's services
about a child in the household can steer a sentence towards the right requirements. A
rushed oral report on the day, without those checks, sends the case into supervision
with its risks unrecorded. A 43 per cent vacancy rate in the court team is a public
protection problem before anyone on probation has been allocated a practitioner.

## The national picture

This is not an isolated result. By the end of 2022 the inspectorate had rated ten of
the seventeen PDUs whose reports it published that year Inadequate, with staff
shortages worst in London and the South East. The first PDU to be rated Good, South
Tyneside and Gateshead, had stable staffing and manageable workloads, which is the
whole argument in a sentence.

Unification was meant to end the fragmentation of the Transforming Rehabilitation
years. It has put every case under one organisation, but it has not yet given that
organisation enough probation officers. Until it does, reports like this one will keep
coming.
""",
        "published": "2023-02-13",
        "categories": ["on-probation", "comment"],
        "tags": [
            "unification",
            "staffing",
            "court-work",
            "public-protection",
            "caseloads",
        ],
        "inspection": {
            "inspectorate": HMIP,
            "title": (
                "An inspection of probation services in: Leicester, Leicestershire and "
                "Rutland PDU"
            ),
            "type": "local",
            "area": "leicester-leicestershire-and-rutland",
            "organisations": ["llr-pdu", "probation-service-east-midlands"],
            # Fieldwork in November 2022; exact days not checked.
            "fieldwork_start": "2022-11-07",
            "fieldwork_end": "2022-11-18",
            "published": "2023-02-09",
            "report_url": "https://hmiprobation.justiceinspectorates.gov.uk/?p=1458",
            "overall": "inadequate",
            # Two points of 27 is as reported; which standards scored them is
            # inferred, and the name of the court work standard is not checked.
            "ratings": [
                {"standard": "1.1 Leadership", "rating": "inadequate"},
                {"standard": "1.2 Staff", "rating": "inadequate"},
                {"standard": "1.3 Services", "rating": "requires_improvement"},
                {
                    "standard": "1.4 Information and facilities",
                    "rating": "requires_improvement",
                },
                {"standard": "2.1 Assessment", "rating": "inadequate"},
                {"standard": "2.2 Planning", "rating": "inadequate"},
                {"standard": "2.3 Implementation and delivery", "rating": "inadequate"},
                {"standard": "2.4 Reviewing", "rating": "inadequate"},
                {"standard": "3.1 Court work", "rating": "inadequate"},
            ],
            # Number of recommendations not checked against the report.
            "recommendations": 7,
            "key_findings": [
                "The PDU scored two points out of a possible 27.",
                "The court team had a 43 per cent vacancy rate.",
                "Only 5 per cent of court work inspected was sufficient.",
                "Risk management arrangements were sufficient in 34 of 93 cases.",
                "Staff remained committed despite excessive workloads and low morale.",
            ],
        },
        "related": [
            {"slug": "derby-city-pdu-requires-improvement-2023", "type": "same_theme"},
            {"slug": "nottingham-city-pdu-inadequate-2024", "type": "same_theme"},
        ],
    },
    {
        "slug": "derby-city-pdu-requires-improvement-2023",
        "title": "Derby City PDU: promising engagement, weak risk management",
        "excerpt": (
            "Derby City's probation delivery unit was rated Requires improvement: "
            "impressive work to engage people on probation was undermined by weak "
            "assessment of the risks they posed."
        ),
        "body": """\
## The rating

Derby City probation delivery unit was inspected in November 2022 alongside its
neighbour in [Leicester, Leicestershire and Rutland][llr], and rated Requires
improvement. Both reports were published on the same day. The
[inspectorate's announcement](https://www.justiceinspectorates.gov.uk/hmiprobation/media/press-releases/2023/02/derby-city-pdu/)
links to the report.

## Strengths

Derby had real assets, and inspectors said so:

- practitioners' efforts to engage people on probation were impressive;
- staff were positive about the way the unit was led;
- services included schemes to prevent homelessness and specialist help for women;
- recruiting and training new probation officers had been made a priority, though the
  inspectorate noted that the benefit to workloads would take time to arrive.

## Weaknesses

The problem was risk. Inspectors did not find that the risk of harm people posed was
being monitored well enough. In around 40 per cent of relevant cases, nobody had asked
the police or children's services for domestic abuse information. Where information
had been obtained, it was not always properly considered. It was not clear whether
checks had been made on the risks someone might pose while on an unpaid work placement.
There were few services specifically for Black, Asian and minority ethnic people on
probation, and services that did exist, such as translation, were under-used.

> In paraphrase, the Chief Inspector said Derby had promise, but that its positive work
> with people on probation was undercut by doubts over whether it properly assessed the
> risks they posed to people they know and to the wider community.

## Engagement without risk assessment

Derby illustrates a pattern we have seen in several recent reports. Practitioners build
good working relationships and connect people to useful services, yet the basic
enquiries that underpin a risk assessment are missed. The two are not in tension. A
practitioner who knows someone well is better placed to notice when their circumstances
change, but only if the assessment they are working from is complete. Domestic abuse
checks with the police and children's services should be as routine as the first
appointment.

## What to watch

Derby's leaders have stable foundations and a staff group that trusts them. If the new
probation officers arrive and caseloads fall, Derby is well placed to be one of the
East Midlands units that moves up a grade. If they do not, the risk findings here are
the ones most likely to get worse.

[llr]: /posts/leicester-leicestershire-rutland-pdu-inadequate-2023/
""",
        "published": "2023-02-14",
        "categories": ["on-probation"],
        "tags": [
            "unification",
            "risk-assessment",
            "domestic-abuse",
            "unpaid-work",
            "caseloads",
        ],
        "inspection": {
            "inspectorate": HMIP,
            "title": "An inspection of probation services in: Derby City PDU",
            "type": "local",
            "area": "derby",
            "organisations": ["derby-city-pdu", "probation-service-east-midlands"],
            # Fieldwork in November 2022; exact days not checked.
            "fieldwork_start": "2022-11-21",
            "fieldwork_end": "2022-12-02",
            "published": "2023-02-09",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/media/"
                "press-releases/2023/02/derby-city-pdu/"
            ),
            "overall": "requires_improvement",
            # Standard-level ratings inferred from the published summary; check
            # against the report's ratings table.
            "ratings": [
                {"standard": "1.1 Leadership", "rating": "good"},
                {"standard": "1.2 Staff", "rating": "requires_improvement"},
                {"standard": "1.3 Services", "rating": "good"},
                {
                    "standard": "1.4 Information and facilities",
                    "rating": "requires_improvement",
                },
                {"standard": "2.1 Assessment", "rating": "requires_improvement"},
                {"standard": "2.2 Planning", "rating": "requires_improvement"},
                {
                    "standard": "2.3 Implementation and delivery",
                    "rating": "requires_improvement",
                },
                {"standard": "2.4 Reviewing", "rating": "inadequate"},
                {"standard": "3.1 Court work", "rating": "requires_improvement"},
            ],
            # Number of recommendations not checked against the report.
            "recommendations": 6,
            "key_findings": [
                "Efforts to engage people on probation were impressive.",
                "Risk of harm was not monitored sufficiently.",
                "Domestic abuse information was not requested in around 40 per cent "
                "of relevant cases.",
                "A good range of services included homelessness prevention and "
                "women's services.",
                "Few services were tailored to Black, Asian and minority ethnic people "
                "on probation.",
            ],
        },
        "related": [
            {
                "slug": "leicester-leicestershire-rutland-pdu-inadequate-2023",
                "type": "same_theme",
            },
            {"slug": "nottingham-city-pdu-inadequate-2024", "type": "see_also"},
        ],
    },
    {
        "slug": "omic-post-release-thematic-2023",
        "title": "After the gate: what happened to prisoners once they were released",
        "excerpt": (
            "Following the same prisoners for up to nine months after release, "
            "inspectors found most without settled housing, very few in work and "
            "three in ten recalled to custody."
        ),
        "body": """\
## The second half of the story

In November 2022 a
[joint inspection](/posts/omic-pre-release-joint-inspection-2022/) concluded that
Offender Management in Custody, the model for preparing prisoners for release, was not
working. This follow-up by HM Inspectorate of Probation tracked the same people for up
to nine months after they left prison. It looked at housing, work, services to reduce
reoffending, the analysis of risk of serious harm, and the staffing behind all of them.
The [inspectorate's announcement](https://www.justiceinspectorates.gov.uk/hmiprobation/media/press-releases/2023/03/omic-post-release/)
links to the report.

## The numbers

- Only four in ten of the people in the sample went to settled accommodation on
  release.
- Of those available for work, just 8 per cent found a job.
- On average 30 per cent were recalled to custody, and four in ten of those recalls
  came within 28 days of release.
- In some probation regions almost half were recalled.

Inspectors also found that communication between prison and probation staff broke down
too often.

> The Chief Inspector's point, in paraphrase: when so many people leave prison with no
> settled address and no meaningful work, a high rate of recall should surprise nobody,
> and anyone responsible for sentence management needed to treat the findings as an
> alarm bell.

## Recall as a symptom

Recall is often discussed as a measure of enforcement, and sometimes it is exactly
that: a licence condition breached, a risk that can no longer be managed in the
community. But a recall in the first four weeks, for someone released without an
address, says more about the release than about the person. Probation practitioners
cannot supervise someone whose whereabouts they do not know, and the licence conditions
that protect victims are hard to enforce against a person sleeping in a different place
each night.

## Comment

The CRC-era Through the Gate service was criticised for years for the same thing: plans
made too late, housing not secured, people released on a Friday afternoon with nowhere
to go. Unification and OMiC were meant to solve that. This report suggests that moving
responsibilities between organisations has not changed the underlying shortage, which
is of people with time to do the work and of housing to release people into.

An inspection sample is not a national statistic, and recall rates vary by region and
by type of sentence. Even so, the direction is unmistakable, and it matches
what local inspections keep finding about resettlement.
""",
        "published": "2023-03-20",
        "categories": ["thematic-inspections", "comment"],
        "tags": ["resettlement", "recall", "accommodation", "through-the-gate"],
        "inspection": {
            "inspectorate": HMIP,
            "title": "Offender Management in Custody - post-release",
            "type": "thematic",
            "area": None,
            "organisations": ["hmpps"],
            # Fieldwork dates and publication day approximate (published March 2023).
            "fieldwork_start": "2022-06-06",
            "fieldwork_end": "2022-12-16",
            "published": "2023-03-14",
            "report_url": (
                "https://www.justiceinspectorates.gov.uk/hmiprobation/media/"
                "press-releases/2023/03/omic-post-release/"
            ),
            "overall": None,
            "ratings": [],
            # Number of recommendations not checked against the report.
            "recommendations": 8,
            "key_findings": [
                "Only four in ten went to settled accommodation on release.",
                "Just 8 per cent of those available for work found employment.",
                "30 per cent were recalled on average, four in ten of them within 28 "
                "days.",
                "In some regions almost half were recalled.",
                "Communication between prison and probation staff too often broke "
                "down.",
            ],
        },
        "related": [
            {"slug": "omic-pre-release-joint-inspection-2022", "type": "same_theme"},
            {
                "slug": "hampshire-isle-of-wight-crc-return-visit-2020",
                "type": "see_also",
            },
        ],
    },
    {
        "slug": "nottingham-city-pdu-inadequate-2024",
        "title": "Nottingham City PDU rated Inadequate despite better staffing",
        "excerpt": (
            "Staffing and workloads had improved, but inspectors found public "
            "protection work in Nottingham City's probation delivery unit too weak, "
            "with safeguarding information rarely used."
        ),
        "body": """\
## The rating

Nottingham City probation delivery unit was inspected in March 2024, its first
inspection since the unit was created when probation was unified in 2021. It was rated
Inadequate. Nottinghamshire PDU, which covers the rest of the county, was inspected
separately at the same time and was also rated Inadequate. Both reports were published
under Martin Jones, who became Chief Inspector of Probation in March 2024. The
[inspectorate's announcement](https://hmiprobation.justiceinspectorates.gov.uk/news/improvements-needed-as-nottingham-city-pdu-and-nottinghamshire-pdu-are-rated-inadequate)
covers both units.

## Better staffing, weak protection

The striking feature of this report is that the usual explanation does not fully
apply. Staffing levels and workloads had recently improved. The weakness was in the
quality of work to keep people safe:

- public protection did not get enough attention in casework;
- arrangements for sharing information with the police and children's services too
  often did not work;
- when safeguarding information did arrive, it informed the assessment in only 22 per
  cent of the cases inspected;
- practitioners did not always identify every child who might be at risk, or ask the
  right local authority for information;
- in one case a reply to a safeguarding enquiry took three months, during which the
  person's contact with a child was not properly assessed.

Services were another mixed picture. Leaders had used diversity data to commission
services for minoritised groups, but referral rates were worryingly low across almost
everything on offer, and practitioners lacked confidence in some providers.

> In paraphrase, the Chief Inspector's view was that recent gains in staffing and
> workloads had not yet reached the quality of casework, and that urgent improvement
> was needed to protect the public and improve outcomes for people on probation.

## The six recommendations

The report makes six recommendations. The two at the heart of it ask the unit to raise
the quality of work to assess, plan for, manage and review risk of harm, and to make
sure domestic abuse and safeguarding information is complete and properly analysed in
every case.

## Comment

For two years the explanation for poor PDU ratings has been staffing, and it has been
true. Nottingham City is a reminder that filling posts is necessary but not sufficient.
New practitioners need supervision from senior probation officers who have time to read
their assessments, and systems that put police and children's services information in
front of them before they write the plan, not three months after.

Readers following the East Midlands will remember
[Leicester, Leicestershire and Rutland][llr] and [Derby City][derby] in 2023. The region
is now the subject of the inspectorate's new cycle of inspecting every PDU and then the
region as a whole. On this evidence, public protection will be the test it is judged
by.

[llr]: /posts/leicester-leicestershire-rutland-pdu-inadequate-2023/
[derby]: /posts/derby-city-pdu-requires-improvement-2023/
""",
        "published": "2024-07-01",
        "categories": ["on-probation"],
        "tags": [
            "unification",
            "public-protection",
            "safeguarding",
            "domestic-abuse",
            "management-oversight",
        ],
        "inspection": {
            "inspectorate": HMIP,
            "title": "An inspection of probation services in: Nottingham City PDU",
            "type": "local",
            "area": "nottingham",
            "organisations": ["nottingham-city-pdu", "probation-service-east-midlands"],
            # Fieldwork in March 2024; exact days and publication day not checked
            # (published summer 2024).
            "fieldwork_start": "2024-03-04",
            "fieldwork_end": "2024-03-15",
            "published": "2024-06-27",
            "report_url": (
                "https://hmiprobation.justiceinspectorates.gov.uk/news/"
                "improvements-needed-as-nottingham-city-pdu-and-nottinghamshire-pdu-"
                "are-rated-inadequate"
            ),
            "overall": "inadequate",
            # Standard-level ratings inferred from the published summary; check
            # against the report's ratings table.
            "ratings": [
                {"standard": "1.1 Leadership", "rating": "requires_improvement"},
                {"standard": "1.2 Staffing", "rating": "requires_improvement"},
                {"standard": "1.3 Services", "rating": "requires_improvement"},
                {"standard": "2.1 Assessment", "rating": "inadequate"},
                {"standard": "2.2 Planning", "rating": "inadequate"},
                {"standard": "2.3 Implementation and delivery", "rating": "inadequate"},
                {"standard": "2.4 Reviewing", "rating": "inadequate"},
            ],
            "recommendations": 6,
            "key_findings": [
                "Staffing and workloads had improved before the inspection.",
                "Public protection work was insufficient.",
                "Safeguarding information informed assessments in only 22 per cent "
                "of cases.",
                "Referral rates to available services were very low.",
                "Nottinghamshire PDU, inspected separately, was also rated Inadequate.",
            ],
        },
        "related": [
            {
                "slug": "leicester-leicestershire-rutland-pdu-inadequate-2023",
                "type": "same_theme",
            },
            {"slug": "derby-city-pdu-requires-improvement-2023", "type": "see_also"},
        ],
    },
]

# The desk's other people, made by seed_demo in the roles of the same names; their
# logins at example.org are the demo's mark on a database (no desk has them).
PEOPLE = [
    {
        "username": "contributor",
        "email": "contributor@example.org",
        "role": "Contributor",
        "first_name": "Casey",
    },
    {
        "username": "editor",
        "email": "editor@example.org",
        "role": "Editor",
        "first_name": "Eden",
    },
]

# Published a few days before the demo is seeded, so that its comment form is open
# (comments close COMMENTS_CLOSE_AFTER_DAYS after publication) and it shows the
# category's sponsor. Commentary, so no inspection of its own.
FRESH_POST = {
    "slug": "how-to-read-a-probation-inspection-report",
    "title": "How to read a probation inspection report",
    "days_ago": 3,
    "author": "editor",
    "excerpt": (
        "A rating on the front page is only the start: where to look in a report "
        "for what inspectors actually found, and what to ask next."
    ),
    "body": """\
## Start with the ratings, then leave them

Since 2018 HM Inspectorate of Probation has given each service a rating on a
four-point scale: Outstanding, Good, Requires improvement or Inadequate. The overall
rating is built from ratings on single standards, grouped in domains: how the service
is organised (leadership, staff, services, information and facilities) and how well
individual cases are supervised (assessment, planning, delivery and review).

The overall word makes the headline. The standards tell you where the trouble is: a
service can be well led and well staffed and still fail the people it supervises
because risk is not assessed, or not reviewed when circumstances change.

## Read the case sample

Inspectors read a sample of cases and say, standard by standard, in what share of
them the work was good enough. Those percentages are the most useful figures in a
report. Look especially at the questions on keeping other people safe: a service that
engages people well but does not manage the risk they pose has not done its job.

## Find the recommendations, and come back to them

Every report ends with recommendations, addressed to the service and often to HM
Prison and Probation Service or the Ministry of Justice. They are worth keeping. The
next inspection of the same area is the time to ask which were acted on.

## Tell us what we missed

We write about these reports because they are one of the few independent looks at
probation work. If you work in a service we have covered, or have been supervised by
one, the comments below are open.
""",
    "categories": ["on-probation", "comment"],
    "tags": ["risk-assessment", "public-protection", "management-oversight"],
}

# A contributor's draft, submitted and waiting for the editor.
REVIEW_POST = {
    "slug": "questions-to-ask-when-your-areas-report-lands",
    "title": "Five questions to ask when your area's inspection report lands",
    "author": "contributor",
    "excerpt": "For councillors, journalists and anyone on a local partnership board.",
    "body": """\
1. What was the overall rating, and which standards pulled it down?
2. In what share of the cases inspectors read was risk to others assessed well?
3. What did staff say about their workloads?
4. Which recommendations repeat those of the last inspection?
5. Who is responsible for each recommendation, and by when?
""",
    "categories": ["comment"],
    "tags": ["risk-assessment", "caseloads"],
}

# Readers' comments, approved. "reply_to" names an earlier comment's author.
COMMENTS = [
    {
        "post": FRESH_POST["slug"],
        "name": "Jo Whitfield",
        "email": "jo.whitfield@example.org",
        "body": (
            "Useful. I would add: read the section on staff views. In our office the "
            "survey said more about the next inspection than the rating did."
        ),
    },
    {
        "post": FRESH_POST["slug"],
        "name": "Sam Okafor",
        "email": "sam.okafor@example.org",
        "body": "Agreed, and compare the case sample figures with the last report's.",
        "reply_to": "Jo Whitfield",
    },
    {
        "post": "suffolk-probation-inspection-2017",
        "name": "A former PSO",
        "email": "former.pso@example.org",
        "body": (
            "Caseloads like those described here were normal for us then. It was "
            "good to see an inspection say so plainly."
        ),
    },
]

# Shown on the category's posts as "On Probation posts sponsored by …". Fictional,
# for the demo: the .example domain is reserved and goes nowhere.
SPONSOR = {
    "category": "on-probation",
    "name": "Example Training Partnership",
    "url": "https://training.example/",
}
